"""`cmi status` (SPEC §1)."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated

import typer

from flows.cli_common import ConfigError, StateOpt, app, guarded, path_of


@app.command()
def status(
    state: StateOpt = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="table|csv|json",
            help="how to print the balances  [default: table on a terminal, csv otherwise]",
        ),
    ] = None,
    cmo: Annotated[
        str | None,
        typer.Option("--cmo", metavar="ID", help="only this CMO's serial balance  [default: all]"),
    ] = None,
    product: Annotated[
        str | None,
        typer.Option(
            "--product",
            metavar="CODE",
            help="only this product (in the contract balance: the item)  [default: all]",
        ),
    ] = None,
    contract: Annotated[
        str | None,
        typer.Option(
            "--contract", metavar="ID", help="only this contract's balance  [default: all]"
        ),
    ] = None,
) -> None:
    """Print the serial and contract balances from the state store (which it only reads)."""
    from flows.status import FORMATS, Filters, balances, render

    path = path_of(state, "CMI_STATE", "state/cmi.duckdb")

    def action() -> None:
        chosen = fmt or ("table" if sys.stdout.isatty() else "csv")
        if chosen not in FORMATS:
            raise ConfigError(f"--format '{fmt}' is not one of {', '.join(FORMATS)}")
        if not path.exists():
            raise ConfigError(f"no state store at {path}: run 'cmi run' first or give --state")
        frames = balances(path, dt.date.today(), Filters(cmo, product, contract))
        sys.stdout.write(render(frames, chosen))
        sys.stdout.flush()

    raise typer.Exit(guarded(path, action))
