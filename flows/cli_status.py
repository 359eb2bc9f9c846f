"""`cmi status` (SPEC §1)."""

from __future__ import annotations

import typer

from flows.cli_common import ConfigError, StateOpt, app, guarded, path_of


@app.command()
def status(state: StateOpt = None) -> None:
    """Print the serial and contract balances from the state store."""
    from flows.status import print_status

    path = path_of(state, "CMI_STATE", "state/cmi.duckdb")

    def action() -> None:
        if not path.exists():
            raise ConfigError(f"no state store at {path}: run 'cmi run' first or give --state")
        print_status(path)

    raise typer.Exit(guarded(path, action))
