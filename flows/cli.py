"""The `cmi` command line (SPEC §1): run, demo, serve, status.

Exit codes: 0 the run completed (rejected rows are normal business); 2 usage or
configuration error; 3 another run holds the state store's lock; 1 anything
unexpected.  Errors are one or two lines; tracebacks go to the log file beside
the state store (`cmi.log`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from connectors.config import ConfigError, load_config
from connectors.store import StateLocked
from flows.pipeline import RunPaths
from transforms.context import Config

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="cmi: nightly file integration for CMO serials and Contract Managed Inventory.")  # fmt: skip

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3


def _err(message: str) -> None:
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


def _path(flag: Path | None, env: str, default: str) -> Path:
    if flag is not None:
        return flag
    value = os.environ.get(env)
    return Path(value) if value else Path(default)


def _config_path(flag: Path | None) -> tuple[Path, bool]:
    if flag is not None:
        return flag, True
    value = os.environ.get("CMI_CONFIG")
    if value:
        return Path(value), True
    return Path("cmi.toml"), False


def _setup_log(state: Path) -> Path:
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


def _use_prefect(choice: bool | None) -> bool:
    if choice is not None:
        return choice
    return bool(os.environ.get("PREFECT_API_URL"))


def execute_run(
    paths: RunPaths,
    config_flag: Path | None,
    as_of_text: str | None,
    prefect: bool | None,
    *,
    config: Config | None = None,
) -> dict[str, Any]:
    """Load configuration (unless `config` is given), then run the nightly stages
    (through Prefect or in-process)."""
    if config is None:
        config_file, explicit = _config_path(config_flag)
        config = load_config(config_file, explicit=explicit)
    as_of = parse_as_of(as_of_text)
    if paths.state.exists() and paths.state.is_dir():
        raise ConfigError(
            f"state path {paths.state} is a folder: give a file such as state/cmi.duckdb"
        )
    for name, folder in (("inbox", paths.inbox), ("outbox", paths.outbox)):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(
                f"{name} {folder} is a file, not a folder: give a folder with --{name} "
                f"(or CMI_{name.upper()})"
            )
    paths.inbox.mkdir(parents=True, exist_ok=True)
    paths.outbox.mkdir(parents=True, exist_ok=True)
    if _use_prefect(prefect):
        from flows.nightly import nightly

        return nightly(paths, config, as_of)
    from flows.pipeline import run_local

    return run_local(paths, config, as_of)


def _print_outline(outline: dict[str, Any]) -> None:
    files = outline["files"]
    by: dict[str, int] = {}
    for f in files:
        by[f["outcome"]] = by.get(f["outcome"], 0) + 1
    typer.echo(
        f"run {outline['run_id']}: {len(files)} file(s) — "
        + ", ".join(f"{n} {k}" for k, n in sorted(by.items()))
    )
    for f in files:
        if f["outcome"] == "applied":
            typer.echo(
                f"  {f['name']}: {f['rows_applied']} row(s) applied, {f['rows_rejected']} rejected"
            )
        else:
            typer.echo(
                f"  {f['name']}: {f['outcome']}" + (f" — {f['reason']}" if f.get("reason") else "")
            )
    typer.echo(f"reports: {outline['report_dir']}")
    if outline["unexpected"]:
        for u in outline["unexpected"]:
            _err(f"unexpected error: {u} (details in the log)")


def _guarded(state: Path, action: Any) -> int:
    log_path = _setup_log(state)
    try:
        action()
    except ConfigError as err:
        _err(str(err))
        return EXIT_USAGE
    except StateLocked as err:
        _err(str(err))
        return EXIT_LOCKED
    except KeyboardInterrupt:
        _err("interrupted; run again to finish (nothing is applied twice)")
        return EXIT_UNEXPECTED
    except Exception as err:  # noqa: BLE001
        logging.getLogger("cmi").exception("unexpected error")
        _err(f"unexpected error: {type(err).__name__}: {err} (details in {log_path})")
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


@app.command()
def run(inbox: InboxOpt = None, outbox: OutboxOpt = None, state: StateOpt = None, config: ConfigOpt = None,
        as_of: AsOfOpt = None, prefect: PrefectOpt = None) -> None:  # fmt: skip
    """One nightly run over the inbox as it is now."""
    paths = RunPaths(_path(inbox, "CMI_INBOX", "inbox"), _path(outbox, "CMI_OUTBOX", "outbox"),
                     _path(state, "CMI_STATE", "state/cmi.duckdb"))  # fmt: skip
    result: dict[str, Any] = {}

    def action() -> None:
        result.update(execute_run(paths, config, as_of, prefect))
        _print_outline(result)

    code = _guarded(paths.state, action)
    if code == EXIT_OK and result.get("unexpected"):
        code = EXIT_UNEXPECTED
    raise typer.Exit(code)


DEMO_MARKER = ".cmi-demo"


def _fresh_demo_dir(folder: Path) -> None:
    """Start every demo from an empty folder; never wipe a folder the demo did not make."""
    import shutil

    if folder.exists() and any(folder.iterdir()):
        if not (folder / DEMO_MARKER).exists():
            raise ConfigError(
                f"{folder} exists and is not a demo folder: give another --dir (the demo starts from an empty folder)"
            )
        for child in folder.iterdir():
            if child.name in ("inbox", "outbox", "state"):
                shutil.rmtree(child)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DEMO_MARKER).write_text("made by cmi demo; the next demo empties this folder\n")


@app.command()
def demo(
    dir: Annotated[
        Path, typer.Option("--dir", help="folder for the demo's inbox, outbox and state")
    ] = Path("demo"),
    as_of: AsOfOpt = None,
    prefect: PrefectOpt = None,
) -> None:
    """Write a realistic sample day into an inbox, run it, and show where the outputs are."""
    from connectors.demo import write_demo_day

    paths = RunPaths(dir / "inbox", dir / "outbox", dir / "state" / "cmi.duckdb")
    result: dict[str, Any] = {}
    when = parse_as_of(as_of) if as_of else dt.datetime(2026, 11, 23, 2, 0, 0)

    try:
        _fresh_demo_dir(dir)
    except ConfigError as err:
        _err(str(err))
        raise typer.Exit(EXIT_USAGE) from err

    def action() -> None:
        written = write_demo_day(paths.inbox, when.date())
        typer.echo(f"demo: wrote {len(written)} file(s) into {paths.inbox}")
        # the sample day is the same everywhere: the built-in settings, not a cmi.toml
        # that happens to be in the current folder
        result.update(
            execute_run(paths, None, when.isoformat(timespec="seconds"), prefect, config=Config())
        )
        _print_outline(result)
        typer.echo(f"exports for CMOs: {paths.outbox / 'serials'}")
        typer.echo(f"partner answers:  {paths.outbox / 'partners'}")
        typer.echo(f"state store:      {paths.state}  (try: cmi status --state {paths.state})")

    code = _guarded(paths.state, action)
    raise typer.Exit(code)


@app.command()
def status(state: StateOpt = None) -> None:
    """Print the serial and contract balances from the state store."""
    from flows.status import print_status

    path = _path(state, "CMI_STATE", "state/cmi.duckdb")

    def action() -> None:
        if not path.exists():
            raise ConfigError(f"no state store at {path}: run 'cmi run' first or give --state")
        print_status(path)

    raise typer.Exit(_guarded(path, action))


@app.command()
def serve(
    cron: Annotated[str, typer.Option("--cron", help="schedule (cron expression)")] = "0 2 * * *",
    inbox: InboxOpt = None, outbox: OutboxOpt = None, state: StateOpt = None, config: ConfigOpt = None,
) -> None:  # fmt: skip
    """Serve the nightly flow on a schedule with Prefect (needs a Prefect server: PREFECT_API_URL)."""
    from flows.nightly import scheduled_nightly

    paths = RunPaths(_path(inbox, "CMI_INBOX", "inbox"), _path(outbox, "CMI_OUTBOX", "outbox"),
                     _path(state, "CMI_STATE", "state/cmi.duckdb"))  # fmt: skip
    config_file, explicit = _config_path(config)

    def action() -> None:
        from prefect.schedules import Cron

        try:
            schedule = Cron(cron)
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"--cron '{cron}' is not a valid cron expression ({err})") from err
        load_config(config_file, explicit=explicit)  # fail fast on a bad configuration
        typer.echo(f"serving the nightly flow on '{cron}' (Ctrl-C to stop)")
        scheduled_nightly.serve(
            name="cmi-nightly",
            schedule=schedule,
            parameters={
                "inbox": str(paths.inbox.resolve()),
                "outbox": str(paths.outbox.resolve()),
                "state": str(paths.state.resolve()),
                "config": str(config_file.resolve())
                if (explicit or config_file.exists())
                else None,
            },
        )

    raise typer.Exit(_guarded(paths.state, action))


def main() -> None:
    try:
        app()
    except SystemExit:
        raise
    sys.exit(0)


if __name__ == "__main__":
    main()
