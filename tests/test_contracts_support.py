"""Shared helpers for the contract tests: an in-memory store, a run context, file rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import duckdb
import polars as pl

from connectors.ddl import SERIAL_DDL
from connectors.ddl_contracts import CONTRACT_DDL
from schemas.base import validate_rows
from transforms.context import Config, FileResult, FunctionsConfig, RunContext

ITEM_A = "11223344556675"
ITEM_B = "00000000000017"
ITEM_C = "00000000000024"
AS_OF = dt.datetime(2024, 3, 1, 2, 0, 0)


def make_store(products: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory store with every table and three products (stock unit EA, BOX for C)."""
    con = duckdb.connect()
    for ddl in SERIAL_DDL + CONTRACT_DDL:
        con.execute(ddl)
    for code, unit in (products or {ITEM_A: "EA", ITEM_B: "EA", ITEM_C: "BOX"}).items():
        con.execute("INSERT INTO products VALUES (?, ?, ?)", [code, f"Product {code}", unit])
    return con


def make_ctx(
    *, cmi_mult: bool = False, icfullqt: bool = False, cmi_bath: bool = False,
    as_of: dt.datetime = AS_OF, source_file: str = "test.csv", run_id: str = "20240301T020000",
) -> RunContext:  # fmt: skip
    functions = FunctionsConfig(cmi_mult=cmi_mult, icfullqt=icfullqt, cmi_bath=cmi_bath)
    return RunContext(run_id, as_of, Config(functions=functions), source_file)


def file_rows(model: Any, records: list[dict[str, str]]) -> pl.DataFrame:
    """The rows of a file (strings, `_line` from 2), validated; fails on a format reject."""
    columns: list[str] = []
    for rec in records:
        columns.extend(c for c in rec if c not in columns)
    frame = pl.DataFrame(
        [{c: (rec.get(c) or None) for c in columns} for rec in records],
        schema={c: pl.String for c in columns},
    ).with_row_index("_line", offset=2)
    frame = frame.with_columns(pl.col("_line").cast(pl.Int64))
    valid, rejects = validate_rows(model, frame)
    assert rejects.height == 0, rejects.to_dicts()
    return valid


def apply(
    fn: Callable[..., FileResult], con: duckdb.DuckDBPyConnection, model: Any,
    records: list[dict[str, str]], ctx: RunContext | None = None,
) -> FileResult:  # fmt: skip
    return fn(con, file_rows(model, records), ctx or make_ctx())


def line_state(con: duckdb.DuckDBPyConnection, contract_id: str, line_no: int) -> dict[str, Any]:
    rows = con.sql(
        "SELECT * FROM contract_lines WHERE contract_id = ? AND line_no = ?",
        params=[contract_id, line_no],
    ).pl()
    assert rows.height == 1
    return rows.to_dicts()[0]


def header_state(con: duckdb.DuckDBPyConnection, contract_id: str) -> dict[str, Any]:
    return (
        con.sql("SELECT * FROM contracts WHERE contract_id = ?", params=[contract_id])
        .pl()
        .to_dicts()[0]
    )


def log_events(
    con: duckdb.DuckDBPyConnection, contract_id: str | None = None
) -> list[tuple[Any, ...]]:
    sql = "SELECT contract_id, line_no, event, order_type, order_no, quantity FROM contract_log"
    if contract_id:
        return con.execute(sql + " WHERE contract_id = ? ORDER BY seq", [contract_id]).fetchall()
    return con.execute(sql + " ORDER BY seq").fetchall()


def rules(result: FileResult) -> list[str]:
    return result.rejects.get_column("rule").to_list()


def header(contract_id: str, ctype: str, **extra: str) -> dict[str, str]:
    """A valid header row of `ctype` (customer/supplier filled as the type needs)."""
    row = {
        "contract_id": contract_id, "description": f"{ctype} contract", "contract_type": ctype,
        "currency": "EUR", "handler": "ANNA", "responsible": "BORIS", "warehouse": f"W{ctype}",
    }  # fmt: skip
    if ctype in {"CDS", "WCS", "CBS", "DIS"}:
        row["customer"] = "CUST1"
    if ctype in {"SCS", "WDS", "WBS", "DIS"}:
        row["supplier"] = "SUPP1"
    row.update(extra)
    return row


def cline(contract_id: str, line_no: int, item: str = ITEM_A, **extra: str) -> dict[str, str]:
    """A valid contract line row (cost price given, so it fits every type)."""
    row = {"contract_id": contract_id, "line_no": str(line_no), "item": item, "cost_price": "1.00"}
    row.update(extra)
    return row
