"""`cmi status`: the serial and contract balances from the state store, as tables."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from connectors.store import open_store
from transforms import contract_reports, reports


def _table(title: str, frame: pl.DataFrame) -> Table:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(col, overflow="fold")  # every code whole, never cut with "…"
    for row in frame.iter_rows():
        table.add_row(*["" if v is None else str(v) for v in row])
    return table


def print_status(path: Path) -> None:
    """Print both balances: tables on a terminal; CSV under a `# title` line when the
    output goes to a file or a pipe (for scripts and spreadsheets: nothing cut)."""
    store = open_store(path)
    console = Console()
    try:
        con = store.con
        sections = [
            ("Serial balance", reports.serial_balance_report(con)),
            (
                "Contract balance",
                contract_reports.contract_balance_report(con, dt.date.today()),
            ),
        ]
    finally:
        store.close()
    for n, (title, frame) in enumerate(sections):
        if console.is_terminal:
            console.print(_table(title, frame))
        else:
            sys.stdout.write(("\n" if n else "") + f"# {title}\n" + frame.write_csv())
    sys.stdout.flush()
