"""The `cmi` command line (SPEC §1): run, demo, serve, status.

Exit codes: 0 the run completed (rejected rows are normal business); 2 usage or
configuration error; 3 another run holds the state store's lock; 1 anything
unexpected.  Errors are one or two lines; tracebacks go to the log file beside
the state store (`cmi.log`).  Shared pieces are in `flows.cli_common`; commands
other than run and demo live in their own modules, imported here to register them.
"""

from __future__ import annotations

import datetime as dt
import gc
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from connectors.config import ConfigError, load_config
from flows.cli_common import (
    EXIT_OK,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    AsOfOpt,
    ConfigOpt,
    InboxOpt,
    OutboxOpt,
    PrefectOpt,
    StateOpt,
    app,
    check_run_paths,
    config_path,
    guarded,
    parse_as_of,
    path_of,
    print_error,
    set_log_clock,
    setup_log,
    use_prefect,
)
from flows.pipeline import RunPaths
from transforms.context import Config

__all__ = ["app", "execute_run", "main"]


def print_warning(message: str) -> None:
    typer.echo(f"cmi: warning: {message}", err=True)


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
    given: Path | None = None  # the cmi.toml the run reads (None: the built-in settings)
    if config is None:
        config_file, explicit = config_path(config_flag)
        config = load_config(config_file, explicit=explicit)
        given = config_file if (explicit or config_file.exists()) else None
    as_of = parse_as_of(as_of_text)
    set_log_clock(as_of)  # §1: the run's clock is the log's too
    check_run_paths(paths.inbox, paths.outbox, paths.state)
    paths.outbox.mkdir(parents=True, exist_ok=True)
    if use_prefect(prefect):
        from flows.prefect_run import run_with_prefect

        log_path = setup_log(paths.state)[0]
        return run_with_prefect(paths, config, given, as_of, log_path, print_warning)
    from flows.pipeline import run_local

    return run_local(paths, config, as_of)


def _print_outline(outline: dict[str, Any]) -> None:
    files = outline["files"]
    by: dict[str, int] = {}
    for f in files:
        by[f["outcome"]] = by.get(f["outcome"], 0) + 1
    typer.echo(
        f"run {outline['run_id']}: {len(files)} file(s) — "
        + (", ".join(f"{n} {k}" for k, n in sorted(by.items())) or "an empty inbox")
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
    sent = outline.get("deliveries") or {}
    if any(sent.values()):
        typer.echo(
            "deliveries: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sent.items())
        )
    typer.echo(f"reports: {outline['report_dir']}")
    page = Path(outline["report_dir"] or ".") / "report.html"
    if outline["report_dir"] and page.exists():
        typer.echo(f"open in a browser: {page}")
    warnings = outline.get("warnings") or []
    if warnings:
        typer.echo(f"{len(warnings)} warning(s):")
        for w in warnings:
            typer.echo(f"  - {w}")
    if outline["unexpected"]:
        for u in outline["unexpected"]:
            print_error(f"unexpected error: {u} (details in the log)")


@app.command()
def run(inbox: InboxOpt = None, outbox: OutboxOpt = None, state: StateOpt = None, config: ConfigOpt = None,
        as_of: AsOfOpt = None, prefect: PrefectOpt = None) -> None:  # fmt: skip
    """One nightly run over the inbox as it is now."""
    paths = RunPaths(path_of(inbox, "CMI_INBOX", "inbox"), path_of(outbox, "CMI_OUTBOX", "outbox"),
                     path_of(state, "CMI_STATE", "state/cmi.duckdb"))  # fmt: skip
    result: dict[str, Any] = {}

    def action() -> None:
        result.update(execute_run(paths, config, as_of, prefect))
        _print_outline(result)

    code = guarded(paths.state, action)
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
        Path,
        typer.Option("--dir", metavar="DIR", help="folder for the demo's inbox, outbox and state"),
    ] = Path("demo"),
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="WHEN",
            help="the sample day's clock: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS  "
            "[default: 2026-11-23T02:00:00]",
        ),
    ] = None,
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
        print_error(str(err))
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

    code = guarded(paths.state, action)
    raise typer.Exit(code)


# the other commands, registered on `app` after run and demo (the order of --help)
from flows import cli_delivery, cli_ops, cli_status, cli_validate  # noqa: E402, F401


def main() -> None:
    try:
        app()
    finally:
        # Everything is written and closed by now; what is left is the interpreter's
        # teardown, whose garbage collections walk every object the imports made (Prefect's
        # are many): 0.4-1 s of a `cmi run` through Prefect, 0.05 s once they are frozen.
        # atexit handlers (log and Prefect queues) still run; only that walk is skipped.
        gc.freeze()
    sys.exit(0)


if __name__ == "__main__":
    main()
