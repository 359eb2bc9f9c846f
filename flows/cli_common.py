"""What every `cmi` command shares (SPEC §1): the Typer app, exit codes, paths from flags,
environment and defaults, the log beside the state store, and the one-line error guard."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from connectors.config import ConfigError
from connectors.store import StateLocked

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="cmi: nightly file integration for CMO serials and Contract Managed Inventory.")  # fmt: skip

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3


def print_error(message: str) -> None:
    typer.echo(f"cmi: {message}", err=True)


def parse_as_of(value: str | None) -> dt.datetime:
    """`YYYY-MM-DD` (midnight) or `YYYY-MM-DDTHH:MM:SS`, local time as given; default now."""
    if value is None:
        return dt.datetime.now().replace(microsecond=0)
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
    raise ConfigError(
        f"--as-of '{value}' is not a date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM:SS)"
    )


def path_of(flag: Path | None, env: str, default: str) -> Path:
    if flag is not None:
        return flag
    value = os.environ.get(env)
    return Path(value) if value else Path(default)


def config_path(flag: Path | None) -> tuple[Path, bool]:
    if flag is not None:
        return flag, True
    value = os.environ.get("CMI_CONFIG")
    if value:
        return Path(value), True
    return Path("cmi.toml"), False


def setup_log(state: Path) -> Path:
    state.parent.mkdir(parents=True, exist_ok=True)
    log_path = state.parent / "cmi.log"
    logger = logging.getLogger("cmi")
    if not any(isinstance(h, logging.FileHandler) for h in logger.handlers):
        handler = logging.FileHandler(log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return log_path


def use_prefect(choice: bool | None) -> bool:
    if choice is not None:
        return choice
    return bool(os.environ.get("PREFECT_API_URL"))


def guarded(state: Path, action: Any) -> int:
    log_path = setup_log(state)
    try:
        action()
    except ConfigError as err:
        print_error(str(err))
        return EXIT_USAGE
    except StateLocked as err:
        print_error(str(err))
        return EXIT_LOCKED
    except KeyboardInterrupt:
        print_error("interrupted; run again to finish (nothing is applied twice)")
        return EXIT_UNEXPECTED
    except Exception as err:  # noqa: BLE001
        logging.getLogger("cmi").exception("unexpected error")
        print_error(f"unexpected error: {type(err).__name__}: {err} (details in {log_path})")
        return EXIT_UNEXPECTED
    return EXIT_OK


InboxOpt = Annotated[
    Path | None, typer.Option("--inbox", help="inbox folder [env CMI_INBOX, default ./inbox]")
]
OutboxOpt = Annotated[
    Path | None, typer.Option("--outbox", help="outbox folder [env CMI_OUTBOX, default ./outbox]")
]
StateOpt = Annotated[
    Path | None,
    typer.Option("--state", help="state store file [env CMI_STATE, default ./state/cmi.duckdb]"),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="cmi.toml [env CMI_CONFIG, default ./cmi.toml when present]"),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="the run's clock: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (local)"),
]
PrefectOpt = Annotated[
    bool | None,
    typer.Option(
        "--prefect/--no-prefect", help="run through Prefect (default: when PREFECT_API_URL is set)"
    ),
]
