"""Reading `cmi.toml` into the typed `Config` (SPEC §2).

Every key is optional; an unknown section or key, or a value of the wrong type,
is a `ConfigError` that names it (the command line turns it into exit code 2).
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from transforms.context import Config, FunctionsConfig, InboxConfig, SerialsConfig


class ConfigError(Exception):
    """A usage or configuration error: the message says what is wrong and what to do."""


_SECTIONS: dict[str, type] = {
    "functions": FunctionsConfig,
    "serials": SerialsConfig,
    "inbox": InboxConfig,
}


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
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a text in quotes, not {value!r}{fix}")
        return value
    return value  # pragma: no cover - every default above is typed


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


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
        cls = _SECTIONS[section]
        defaults = {f.name: f.default for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key not in defaults:
                raise ConfigError(
                    f"{source}: unknown key '{key}' in [{section}]; known keys are "
                    + ", ".join(defaults)
                )
            values[key] = _check_type(source, section, key, value, defaults[key])
        parts[section] = cls(**values)
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
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err}); fix the file") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8") from err
    return parse_config(data, str(path))
