"""What every `cmi` command shares (SPEC §1): the Typer app, exit codes, paths from flags,
environment and defaults, the log beside the state store, and the one-line error guard."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from connectors.config import ConfigError
from connectors.faults import RunStopped, describe, is_environmental
from connectors.store import StateLocked

# rich_markup_mode=None: plain help, in which `[env var: CMI_INBOX]` and a default stay as
# written (rich markup took them for tags and dropped them) and flags show no type
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="cmi: nightly file integration for CMO serials and Contract Managed Inventory.")  # fmt: skip


def version() -> str:
    """The installed package's version (`cmi --version`)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("cmi")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cmi {version()}")
        raise typer.Exit(0)


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True,
                     help="print the version (cmi <version>) and exit"),
    ] = False,
) -> None:  # fmt: skip
    """cmi: nightly file integration for CMO serials and Contract Managed Inventory."""


EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3


def print_error(message: str) -> None:
    typer.echo(f"cmi: {message}", err=True)


_AS_OF = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2})?", re.ASCII)


def parse_as_of(value: str | None) -> dt.datetime:
    """`YYYY-MM-DD` (midnight) or `YYYY-MM-DDTHH:MM:SS`, local time as given; default now."""
    if value is None:
        return dt.datetime.now().replace(microsecond=0)
    # the two forms exactly: strptime alone takes 2026-1-5 and T2:3:4 too
    if _AS_OF.fullmatch(value):
        try:
            return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S" if "T" in value else "%Y-%m-%d")
        except ValueError:  # not a calendar date or time of day
            pass
    raise ConfigError(
        f"--as-of '{value}' is not a date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM:SS)"
    )


def path_of(flag: Path | None, env: str, default: str) -> Path:
    if flag is not None:
        return flag
    value = os.environ.get(env)
    return Path(value) if value else Path(default)


def check_run_paths(inbox: Path, outbox: Path, state: Path) -> None:
    """The paths of a run, before anything is made (§1): the state a file, the inbox and
    the outbox folders, the inbox there — a run started in the wrong place must not pass
    for an empty night."""
    if state.exists() and state.is_dir():
        raise ConfigError(f"state path {state} is a folder: give a file such as state/cmi.duckdb")
    for name, folder in (("inbox", inbox), ("outbox", outbox)):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(
                f"{name} {folder} is a file, not a folder: give a folder with --{name} "
                f"(or CMI_{name.upper()})"
            )
    if not inbox.exists():
        raise ConfigError(
            f"inbox {inbox} does not exist: give the inbox folder with --inbox (or "
            "CMI_INBOX), or create it"
        )


def config_path(flag: Path | None) -> tuple[Path, bool]:
    if flag is not None:
        return flag, True
    value = os.environ.get("CMI_CONFIG")
    if value:
        return Path(value), True
    return Path("cmi.toml"), False


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_log_clock: dt.datetime | None = None  # the clock of the run being logged, once it is known


def set_log_clock(clock: dt.datetime | None) -> None:
    """Stamp the lines of `cmi.log` with `clock`, the run's clock, from now on (SPEC §1: the
    run's clock — `--as-of`, else the run's start — is the clock of the log as it is of the
    run ids and file names); None: the machine's clock, for a command without a run's
    clock (status, redeliver) and before a run's clock is known."""
    global _log_clock
    _log_clock = clock


class LogFormatter(logging.Formatter):
    """The lines of `cmi.log`: `LOG_FORMAT`, the time the run's clock when there is one."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        clock = _log_clock
        if clock is None:
            return super().formatTime(record, datefmt)
        return clock.strftime("%Y-%m-%d %H:%M:%S,000")  # the shape of logging's own stamp


class _LogFile(logging.FileHandler):
    """`cmi.log`.  A line that cannot be written (the disk under the state store filled up
    during the run) is dropped: logging's default prints a traceback on the console."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def setup_log(state: Path, log_dir: Path | None = None) -> tuple[Path, OSError | None]:
    """Open `cmi.log` beside the state store (or in `log_dir`, made only when something is
    logged: `cmi validate` leaves nothing but its report); return its path and why it
    could not be opened (a read-only or full state folder), or None."""
    folder = state.parent if log_dir is None else log_dir
    log_path = folder / "cmi.log"
    logger = logging.getLogger("cmi")
    if not any(isinstance(h, logging.FileHandler) for h in logger.handlers):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handler = _LogFile(log_path, encoding="utf-8", delay=log_dir is not None)
        except OSError as err:
            # nowhere to write the log: never onto the console (logging's last resort)
            logger.addHandler(logging.NullHandler())
            logger.propagate = False
            return log_path, err
        handler.setFormatter(LogFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return log_path, None


def use_prefect(choice: bool | None) -> bool:
    if choice is not None:
        return choice
    return bool(os.environ.get("PREFECT_API_URL"))


def guarded(state: Path, action: Any, log_dir: Path | None = None) -> int:
    """Run `action`; turn what it raises into one line on the console and an exit code.

    A failure of the surroundings (full disk, read-only folder, I/O error: §8 stop,
    don't cascade) is exit 1 with the line that says what to fix; the traceback goes
    to the log (beside the state store, or in `log_dir`) when the log can be written."""
    log_path, log_failure = setup_log(state, log_dir)
    places = [("the state store's folder", state.parent)]
    set_log_clock(None)  # until the command knows its run's clock (never an earlier one's)
    try:
        return _guard(action, log_path, log_failure, places)
    finally:
        set_log_clock(None)


def _guard(
    action: Any, log_path: Path, log_failure: OSError | None, places: list[tuple[str, Path]]
) -> int:
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
        if not getattr(err, "_cmi_logged", False):  # a Prefect flow run logged it already
            logging.getLogger("cmi").exception("unexpected error")
        if log_failure is not None:  # the folder of the log and the store: say so
            print_error(f"{describe(log_failure, places)} (its log {log_path} cannot be opened)")
        elif isinstance(err, RunStopped):
            print_error(f"{err}; details in {log_path}")
        elif is_environmental(err):
            print_error(f"stopped: {describe(err, places)}; details in {log_path}")
        else:
            print_error(f"unexpected error: {type(err).__name__}: {err} (details in {log_path})")
        return EXIT_UNEXPECTED
    return EXIT_OK


def _path_option(flag: str, env: str, what: str, default: str, metavar: str) -> Any:
    """A path option read from the flag, else the environment variable, else the default
    (SPEC §1, resolved by `path_of`); `--help` shows the variable and the default the way
    click shows other defaults."""
    return typer.Option(flag, metavar=metavar, help=f"{what}  [env var: {env}; default: {default}]")


InboxOpt = Annotated[
    Path | None, _path_option("--inbox", "CMI_INBOX", "inbox folder", "./inbox", "DIR")
]
OutboxOpt = Annotated[
    Path | None, _path_option("--outbox", "CMI_OUTBOX", "outbox folder", "./outbox", "DIR")
]
StateOpt = Annotated[
    Path | None,
    _path_option("--state", "CMI_STATE", "state store file", "./state/cmi.duckdb", "FILE"),
]
ConfigOpt = Annotated[
    Path | None,
    _path_option("--config", "CMI_CONFIG", "configuration file", "./cmi.toml when present", "FILE"),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="WHEN",
        help="the run's clock: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, local time  [default: now]",
    ),
]
PrefectOpt = Annotated[
    bool | None,
    typer.Option(
        "--prefect/--no-prefect",
        help="run through Prefect or in-process  [default: Prefect when PREFECT_API_URL is set]",
    ),
]
