"""`cmi validate` (SPEC §1): a dry run over the inbox; exit 0 when nothing would be
rejected, 4 when a row or a file would be, 3 while a run holds the store."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from connectors.config import ConfigError, load_config
from flows.cli_common import (
    EXIT_OK,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    AsOfOpt,
    ConfigOpt,
    InboxOpt,
    StateOpt,
    app,
    config_path,
    guarded,
    parse_as_of,
    path_of,
    print_error,
    set_log_clock,
)

EXIT_WOULD_REJECT = 4


@app.command()
def validate(
    inbox: InboxOpt = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    as_of: AsOfOpt = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="DIR",
            help="folder for the report (rejects.csv, run_summary.json)  "
            "[default: a new folder under the system's temporary folder]",
        ),
    ] = None,
) -> None:
    """Judge every inbox file as a run would now, changing nothing (a dry run)."""
    from flows.validate import validate_inbox

    inbox_path = path_of(inbox, "CMI_INBOX", "inbox")
    state_path = path_of(state, "CMI_STATE", "state/cmi.duckdb")
    outcome: dict[str, int] = {}
    if report is not None and report.exists() and not report.is_dir():
        # before the guard, whose log would go into that folder (§1: a usage error)
        print_error(f"--report {report} is a file, not a folder: give a folder for the report")
        raise typer.Exit(EXIT_USAGE)
    # the report folder first: the log goes there (nothing is written beside the store)
    report_dir = report if report is not None else Path(tempfile.mkdtemp(prefix="cmi-validate-"))

    def action() -> None:
        config_file, explicit = config_path(config)
        cfg = load_config(config_file, explicit=explicit)
        when = parse_as_of(as_of)
        set_log_clock(when)  # §1: the run's clock is the log's too
        if not inbox_path.is_dir():
            raise ConfigError(
                f"inbox {inbox_path} does not exist: give the inbox folder with --inbox "
                "(or CMI_INBOX)"
            )
        if state_path.exists() and state_path.is_dir():
            raise ConfigError(
                f"state path {state_path} is a folder: give a file such as state/cmi.duckdb"
            )
        if not state_path.exists():
            typer.echo(f"no state store at {state_path} yet: judging against an empty state")
        found = validate_inbox(inbox_path, state_path, cfg, when, report_dir)
        by: dict[str, int] = {}
        for f in found.files:
            by[f["outcome"]] = by.get(f["outcome"], 0) + 1
        typer.echo(
            f"validate: {len(found.files)} file(s) — "
            + (", ".join(f"{n} {k}" for k, n in sorted(by.items())) or "an empty inbox")
        )
        for f in found.files:
            if f["outcome"] == "would_apply":
                line = f"{f['rows_applied']} row(s) would apply, {f['rows_rejected']} rejected"
            else:
                line = f["outcome"] + (f" — {f['reason']}" if f.get("reason") else "")
            typer.echo(f"  {f['name']}: {line}")
        typer.echo(f"report: {found.report_dir}")
        if found.warnings:
            typer.echo(f"{len(found.warnings)} warning(s):")
            for w in found.warnings:
                typer.echo(f"  - {w}")
        for u in found.unexpected:
            print_error(f"could not judge {u} (details in the log)")
        if found.unexpected:
            outcome["code"] = EXIT_UNEXPECTED
        elif found.would_reject:
            typer.echo("something would be rejected: see rejects.csv and run_summary.json")
            outcome["code"] = EXIT_WOULD_REJECT
        else:
            typer.echo("nothing would be rejected")

    code = guarded(state_path, action, log_dir=report_dir)
    raise typer.Exit(outcome.get("code", EXIT_OK) if code == EXIT_OK else code)
