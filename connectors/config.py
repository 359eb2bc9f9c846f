"""Reading `cmi.toml` into the typed `Config` (SPEC §2).

Every key is optional; an unknown section or key, or a value of the wrong type,
is a `ConfigError` that names it (the command line turns it into exit code 2).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from transforms.context import (
    NOTIFY_EVENTS,
    Config,
    DeliveryTarget,
    FunctionsConfig,
    InboxConfig,
    NotifyConfig,
    ReportsConfig,
    SerialsConfig,
)


class ConfigError(Exception):
    """A usage or configuration error: the message says what is wrong and what to do."""


_SECTIONS: dict[str, type] = {
    "functions": FunctionsConfig,
    "serials": SerialsConfig,
    "inbox": InboxConfig,
    "reports": ReportsConfig,
    "notify": NotifyConfig,
    "delivery": DeliveryTarget,  # a table of tables: [delivery.<cmo_id>]
}
# the §3.1 rule for a cmo_id (it becomes a folder name)
_CMO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,34}$")


def _check_type(source: str, section: str, key: str, value: Any, default: Any) -> Any:
    where = f"{source}: [{section}] {key}"
    fix = f"; write it like {key} = {_toml(default)} (the default)"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}{fix}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, not {value!r}{fix}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, not {value!r}{fix}")
        return float(value)
    if default is MISSING:  # a text without a default (a delivery's url)
        fix = f'; write it like {key} = "..."'
    if isinstance(default, str) or default is None or default is MISSING:  # (None: optional)
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a text in quotes, not {value!r}{fix}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(
                f'{where} must be a list of texts in quotes, such as ["a", "b"], not {value!r}'
            )
        return tuple(value)
    return value  # pragma: no cover - every default above is typed


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if value is None:
        return '"..."'
    return str(value)


def _section(
    source: str, section: str, cls: Any, body: dict[str, Any], skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The typed keys of one section, rejecting unknown keys and wrong types."""
    defaults = {f.name: f.default for f in fields(cls) if f.name not in skip}
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key not in defaults:
            raise ConfigError(
                f"{source}: unknown key '{key}' in [{section}]; known keys are "
                + ", ".join(defaults)
            )
        values[key] = _check_type(source, section, key, value, defaults[key])
    return values


def _delivery(source: str, body: dict[str, Any]) -> tuple[DeliveryTarget, ...]:
    """`[delivery.<cmo_id>]` sections (§2, §8.1): a URL `sftp://` (with a key file or a
    password variable) or `file://`."""
    targets = []
    for cmo_id, table in sorted(body.items()):
        section = f"delivery.{cmo_id}"
        if not isinstance(table, dict):
            raise ConfigError(
                f"{source}: [delivery] holds one section per CMO, such as [delivery.ACME-01] "
                f"with url = ...; '{cmo_id}' is a plain key"
            )
        if not _CMO_ID.match(cmo_id):
            raise ConfigError(
                f"{source}: [{section}]: '{cmo_id}' is not a cmo_id (1-35 of A-Z a-z 0-9 . _ -, "
                "starting with a letter or a digit; quote it when it holds a dot)"
            )
        values = _section(source, section, DeliveryTarget, table, skip=("cmo_id",))
        url = values.get("url")
        if not url:
            raise ConfigError(
                f'{source}: [{section}] needs url = "sftp://user@host:22/path" or "file:///path"'
            )
        parts = urlsplit(url)
        if parts.scheme not in ("sftp", "file"):
            raise ConfigError(
                f"{source}: [{section}] url {url!r} must start with sftp:// or file://"
            )
        if parts.scheme == "sftp":
            if not parts.hostname or not parts.username:
                raise ConfigError(
                    f"{source}: [{section}] url must name a user and a host: sftp://user@host:22/path"
                )
            if parts.password:
                raise ConfigError(
                    f"{source}: [{section}] url holds a password: remove it and name the "
                    "environment variable that holds it with password_env"
                )
            try:
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError as err:
                raise ConfigError(f"{source}: [{section}] url: {err}") from err
            if not values.get("key_file") and not values.get("password_env"):
                raise ConfigError(
                    f'{source}: [{section}] names no way to log in: add key_file = "/path/to/key" '
                    'or password_env = "NAME_OF_AN_ENV_VAR"'
                )
        elif parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"{source}: [{section}] url {url!r}: a folder is written file:///path (three slashes)"
            )
        targets.append(DeliveryTarget(cmo_id=cmo_id, **values))
    return tuple(targets)


def parse_config(data: dict[str, Any], source: str = "cmi.toml") -> Config:
    """Build a `Config` from parsed TOML, rejecting unknown sections, keys and wrong types."""
    parts: dict[str, Any] = {}
    for section, body in data.items():
        if not isinstance(body, dict):  # a key before any [section] line
            sections = [name for name, cls in _SECTIONS.items() if section in _keys(cls)]
            raise ConfigError(
                f"{source}: the key '{section}' stands outside any section; "
                + (
                    f"put it under [{sections[0]}]"
                    if sections
                    else "known sections are " + ", ".join(f"[{s}]" for s in _SECTIONS)
                )
            )
        if section not in _SECTIONS:
            raise ConfigError(
                f"{source}: unknown section [{section}]; known sections are "
                + ", ".join(f"[{s}]" for s in _SECTIONS)
            )
        if section == "delivery":
            parts[section] = _delivery(source, body)
            continue
        cls = _SECTIONS[section]
        parts[section] = cls(**_section(source, section, cls, body))
    config = Config(**parts)
    _check_values(config, source)
    return config


def _keys(cls: Any) -> set[str]:
    return {f.name for f in fields(cls)}


def _check_values(config: Config, source: str) -> None:
    s = config.serials
    if s.generated_charset not in ("numeric", "alphanumeric"):
        raise ConfigError(
            f'{source}: [serials] generated_charset must be "numeric" or "alphanumeric", '
            f"not {s.generated_charset!r}"
        )
    if not 1 <= s.generated_length <= 20:
        raise ConfigError(
            f"{source}: [serials] generated_length must be 1 to 20 (GS1 AI(21)), "
            f"not {s.generated_length}"
        )
    if s.min_randomness_factor < 1:
        raise ConfigError(f"{source}: [serials] min_randomness_factor must be at least 1")
    if config.inbox.settle_seconds < 0:
        raise ConfigError(f"{source}: [inbox] settle_seconds must not be negative")
    unknown = [e for e in config.notify.on if e not in NOTIFY_EVENTS]
    if unknown:
        raise ConfigError(
            f"{source}: [notify] on: unknown event {unknown[0]!r}; use any of "
            + ", ".join(f'"{e}"' for e in NOTIFY_EVENTS)
        )
    if config.notify.urls:
        _check_notify_urls(config, source)


def _check_notify_urls(config: Config, source: str) -> None:
    from connectors.notify import shown, unknown_urls

    bad = unknown_urls(config.notify.urls)
    if bad:
        raise ConfigError(
            f"{source}: [notify] urls: {shown(bad[0])} is not a URL Apprise can send to; see "
            "https://github.com/caronc/apprise/wiki for the URL of each service"
        )


def load_config(path: Path | None, *, explicit: bool) -> Config:
    """Load `path`; a missing file is an error only when the user named it."""
    if path is None or not path.exists():
        if explicit:
            raise ConfigError(
                f"configuration file {path} does not exist: give an existing file to --config "
                "(or CMI_CONFIG), or leave it out to use the defaults"
            )
        return Config()
    if path.is_dir():
        raise ConfigError(f"configuration path {path} is a folder, not a file")
    return parse_config(read_toml(path), str(path))


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file (cmi.toml, the tenants file) as a dict; a file that is not UTF-8 TOML
    is a ConfigError saying what to fix."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err}); fix the file") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8") from err
