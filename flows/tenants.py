"""The tenants file of `cmi deploy` (SPEC §11): the companies (or sites) served, each with its
own folders, state store, optional cmi.toml, cron and time zone.

```toml
[tenants.acme]                          # 1-35 of A-Z a-z 0-9 . _ -
inbox = "/srv/cmi/acme/inbox"
outbox = "/srv/cmi/acme/outbox"
state = "/srv/cmi/acme/state/cmi.duckdb"
config = "/srv/cmi/acme/cmi.toml"       # optional
cron = "0 2 * * *"                      # optional
timezone = "Europe/Berlin"              # optional, default the machine's
```

Every mistake is a configuration error (exit 2) that names the tenant and the key.
Relative paths are read from the tenants file's folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.config import ConfigError, load_config, read_toml

DEFAULT_CRON = "0 2 * * *"
TENANT_NAME = re.compile(r"[A-Za-z0-9._-]{1,35}")
_REQUIRED = ("inbox", "outbox", "state")
_OPTIONAL = ("config", "cron", "timezone")


@dataclass(frozen=True)
class Tenant:
    name: str
    inbox: Path
    outbox: Path
    state: Path
    config: Path | None
    cron: str
    timezone: str

    def parameters(self) -> dict[str, Any]:
        """The flow parameters of the tenant's deployment: absolute paths, never a secret."""
        return {"inbox": str(self.inbox), "outbox": str(self.outbox), "state": str(self.state),
                "config": str(self.config) if self.config else None, "as_of": None,
                "tenant": self.name, "timezone": self.timezone}  # fmt: skip


def local_timezone() -> str:
    """The machine's IANA time zone (e.g. Europe/Berlin; Etc/UTC when it has none)."""
    import tzlocal

    try:
        return str(tzlocal.get_localzone_name() or "Etc/UTC")
    except Exception:  # noqa: BLE001 - a machine without a zone setting runs on UTC
        return "Etc/UTC"


def check_timezone(value: str, where: str) -> str:
    """An IANA time zone name (Europe/Berlin, America/New_York, Etc/UTC) that Prefect's
    scheduler knows."""
    from prefect.client.schemas.schedules import is_valid_timezone

    if not is_valid_timezone(value):
        raise ConfigError(
            f"{where}: unknown time zone {value!r}; give an IANA name such as Europe/Berlin"
        )
    return value


def check_cron(value: str, where: str) -> str:
    """A five-field cron expression that Prefect's scheduler accepts."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        ok = len(value.split()) == 5 and CronSchedule(cron=value) is not None
    except ValueError:  # pydantic's ValidationError is one
        ok = False
    if not ok:
        raise ConfigError(
            f"{where}: {value!r} is not a cron expression; give five fields such as "
            f"{DEFAULT_CRON!r} (minute hour day-of-month month day-of-week)"
        )
    return value


def parse_tenants(data: dict[str, Any], source: str, base: Path) -> list[Tenant]:
    """Check a parsed tenants file and return its tenants in file order."""
    extra = [k for k in data if k != "tenants"]
    if extra:
        raise ConfigError(
            f"{source}: unknown section or key {extra[0]!r}: a tenants file holds only "
            "[tenants.<name>] sections"
        )
    body = data.get("tenants")
    if not isinstance(body, dict) or not body:
        raise ConfigError(f"{source}: no tenant: add a [tenants.<name>] section per tenant")
    tenants, machine_zone = [], None
    for name, spec in body.items():
        where = f"{source}: [tenants.{name}]"
        if not TENANT_NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: a tenant name is 1 to 35 of A-Z a-z 0-9 . _ - (it names the "
                "deployment nightly/<tenant>)"
            )
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: must be a section with inbox, outbox and state")
        unknown = [k for k in spec if k not in _REQUIRED + _OPTIONAL]
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}; known keys are "
                + ", ".join(_REQUIRED + _OPTIONAL)
            )
        for key, value in spec.items():
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{where}: {key} must be a non-empty text, not {value!r}")
        missing = [k for k in _REQUIRED if k not in spec]
        if missing:
            raise ConfigError(f"{where}: {missing[0]} is missing (inbox, outbox and state are needed)")  # fmt: skip

        inbox, outbox, state = (_path(spec[k], base) for k in _REQUIRED)
        if state.is_dir():
            raise ConfigError(f"{where}: state {state} is a folder: give a file such as state/cmi.duckdb")  # fmt: skip
        for key, folder in (("inbox", inbox), ("outbox", outbox)):
            if folder.exists() and not folder.is_dir():
                raise ConfigError(f"{where}: {key} {folder} is a file, not a folder")
        config = _path(spec["config"], base) if "config" in spec else None
        if config is not None:
            _check_config(config, where)  # the night must not fail on its cmi.toml
        if "timezone" in spec:
            zone = check_timezone(spec["timezone"], where)
        else:
            zone = machine_zone = machine_zone or local_timezone()
        cron = check_cron(spec.get("cron", DEFAULT_CRON), where)
        tenants.append(Tenant(name, inbox, outbox, state, config, cron, zone))
    _check_shared(tenants, source)
    return tenants


def _check_config(config: Path, where: str) -> None:
    """A tenant's cmi.toml exists and is valid; an error names the tenant and the key."""
    if not config.is_file():
        what = "is a folder" if config.is_dir() else "does not exist"
        raise ConfigError(
            f"{where}: config {config} {what}: create the file (an empty one takes the "
            "built-in settings), or remove the config key"
        )
    try:
        load_config(config, explicit=True)
    except ConfigError as err:
        raise ConfigError(f"{where}: config: {err}") from err


def _path(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _check_shared(tenants: list[Tenant], source: str) -> None:
    """Two tenants never share a state store, an inbox or an outbox."""
    for key in ("state", "inbox", "outbox"):
        seen: dict[Path, str] = {}
        for t in tenants:
            value = getattr(t, key)
            if value in seen:
                raise ConfigError(
                    f"{source}: tenants {seen[value]} and {t.name} have the same {key} "
                    f"{value}: each tenant needs its own"
                )
            seen[value] = t.name
    lowered: dict[str, str] = {}
    for t in tenants:
        if t.name.lower() in lowered:
            raise ConfigError(
                f"{source}: tenants {lowered[t.name.lower()]} and {t.name} differ only in case"
            )
        lowered[t.name.lower()] = t.name


def load_tenants(path: Path) -> list[Tenant]:
    """Read and check a tenants file."""
    if not path.is_file():
        raise ConfigError(f"tenants file {path} does not exist: give the file with --tenants")
    return parse_tenants(read_toml(path), str(path), path.resolve().parent)
