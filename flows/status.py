"""`cmi status`: the serial and contract balances from the state store, as tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from connectors.store import open_store
from transforms import contract_reports, reports


def _table(title: str, frame: pl.DataFrame) -> Table:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(col)
    for row in frame.iter_rows():
        table.add_row(*["" if v is None else str(v) for v in row])
    return table


def print_status(path: Path) -> None:
    store = open_store(path)
    console = Console()
    try:
        con = store.con
        balance = reports.serial_balance_report(con)
        console.print(_table("Serial balance", balance))
        contract = contract_reports.contract_balance_report(con, dt.date.today())
        console.print(_table("Contract balance", contract))
    finally:
        store.close()
