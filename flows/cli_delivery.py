"""`cmi redeliver` (SPEC §1, §8, §8.1): recorded export files or partner answers written into
the outbox again and delivered again on request — e.g. when a CMO lost one.

Exit codes: 0 done; 2 a name that is no recorded file (named; nothing is changed); 3 a run
holds the state store (the message names the latest completed run's report folder); 1 a
file could not be written or delivered (it stays pending: the next run delivers it).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from connectors.config import ConfigError, load_config
from connectors.store import StateLocked, holder_note, open_store
from flows.cli_common import (
    EXIT_OK,
    EXIT_UNEXPECTED,
    ConfigOpt,
    OutboxOpt,
    StateOpt,
    app,
    config_path,
    guarded,
    path_of,
    print_error,
    set_log_clock,
)


def _latest_reports(state: Path, outbox: Path) -> str:
    """What the run holding the store left in its lock file, and in any case the latest
    completed run's report folder under this outbox (§1)."""
    note = holder_note(state)
    try:
        latest = (outbox / "reports" / "LATEST").read_text(encoding="utf-8").strip()
    except OSError:
        return note
    folder = str((outbox / "reports" / latest).resolve())
    if not latest or folder in note:
        return note
    return f"{note}; the latest completed run's reports are in {folder}"


@app.command()
def redeliver(
    file_names: Annotated[
        list[str],
        typer.Argument(
            metavar="FILE_NAME...",
            help="export files or partner answers, by name (as exported_files.csv lists them) "
            "or by path under the outbox (serials/<cmo_id>/<name>)",
            show_default=False,
        ),
    ],
    state: StateOpt = None,
    outbox: OutboxOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write recorded export files or partner answers again and deliver them again (when
    their CMO has a [delivery] section), e.g. when a CMO lost one."""
    from flows.delivery_stage import UnknownFiles, redeliver_files

    path = path_of(state, "CMI_STATE", "state/cmi.duckdb")
    out = path_of(outbox, "CMI_OUTBOX", "outbox")
    failed: list[str] = []

    def action() -> None:
        config_file, explicit = config_path(config)
        cfg = load_config(config_file, explicit=explicit)
        if not path.exists():
            raise ConfigError(
                f"no state store at {path}: give the store with --state (or CMI_STATE)"
            )
        try:
            store = open_store(path)
        except StateLocked as err:
            raise StateLocked(
                f"a run is using the state store {path}; {_latest_reports(path, out)}; run "
                "cmi redeliver again when it has finished"
            ) from err
        when = dt.datetime.now().replace(microsecond=0)  # its clock: delivered_at, the log
        set_log_clock(when)
        try:
            done = redeliver_files(store.con, out, cfg, file_names, when)
        except UnknownFiles as err:
            raise ConfigError(str(err)) from err
        finally:
            store.close()
        for rel in done.written:
            typer.echo(f"written: {out / rel}")
        for row in done.deliveries:
            if row.outcome == "failed":
                failed.append(f"{row.file_name} could not be delivered to {row.url}: {row.message}")
            else:
                note = " (it was already there)" if row.outcome == "already_there" else ""
                typer.echo(f"delivered: {row.file_name} to {row.url}{note}")

    code = guarded(path, action)
    for line in failed:
        print_error(f"{line}; it stays pending and the next run tries again")
    if code == EXIT_OK and failed:
        code = EXIT_UNEXPECTED
    raise typer.Exit(code)
