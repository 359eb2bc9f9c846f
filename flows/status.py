"""`cmi status` (SPEC §1): the serial and contract balances from a read-only view of the
state store, as a compact table, as CSV or as JSON, filtered when asked."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from connectors import outbox as outbox_io
from connectors.state_view import open_state_view
from schemas.contracts import REPORT_COLUMNS
from transforms import contract_reports, reports

FORMATS = ("table", "csv", "json")


@dataclass(frozen=True)
class Filters:
    """`--cmo` filters the serial balance only, `--contract` the contract balance only,
    `--product` both (the contract balance's `item`) — §1."""

    cmo: str | None = None
    product: str | None = None
    contract: str | None = None


def balances(path: Path, today: dt.date, filters: Filters) -> dict[str, pl.DataFrame]:
    """Both balances of the store at `path`, filtered (the store is only read)."""
    store, _ = open_state_view(path)
    try:
        serial = reports.serial_balance_report(store.con)
        contract = contract_reports.contract_balance_report(store.con, today)
    finally:
        store.close()
    if filters.cmo is not None:
        serial = serial.filter(pl.col("cmo_id") == filters.cmo)
    if filters.product is not None:
        serial = serial.filter(pl.col("product_code") == filters.product)
        contract = contract.filter(pl.col("item") == filters.product)
    if filters.contract is not None:
        contract = contract.filter(pl.col("contract_id") == filters.contract)
    return {
        "serial_balance": serial.select(reports.SERIAL_BALANCE_COLUMNS),
        "contract_balance": contract.select(REPORT_COLUMNS["contract_balance.csv"]),
    }


def as_csv(frames: dict[str, pl.DataFrame]) -> str:
    """Each balance under a `# <name>` line, with the columns and cells of its report CSV."""
    out = []
    for name, frame in frames.items():
        body = outbox_io.report_csv_bytes(frame, frame.columns).decode("utf-8")
        out.append(f"# {name}\n{body}")
    return "".join(out)


def as_json(frames: dict[str, pl.DataFrame]) -> str:
    """`{"serial_balance": [...], "contract_balance": [...]}`: one object per row keyed by
    the report's columns; quantities numbers, codes strings, a blank cell null."""
    return json.dumps({name: frame.to_dicts() for name, frame in frames.items()}, indent=2) + "\n"


# ------------------------------------------------------------------------------- tables

_SERIAL_COUNTS = [
    ("available", "avail"), ("assigned", "assign"), ("assigned_not_exported", "unexp"),
    ("exported", "export"), ("requested", "request"), ("commissioned", "comm"),
    ("shipped", "ship"), ("decommissioned", "decomm"),
]  # fmt: skip
_LINE_COLUMNS = [
    ("line_no", "line", True), ("item", "item", False), ("warehouse", "wh", False),
    ("status", "st", False), ("contract_quantity", "qty", True), ("unit", "unit", False),
    ("received", "recv", True), ("ncc", "ncc", True), ("consumed", "cons", True),
    ("available", "avail", True), ("end_date", "ends", False), ("flag", "", False),
]  # fmt: skip


def _aligned(rows: list[list[str]], right: Sequence[bool], indent: str = "  ") -> list[str]:
    """Rows of cells as lines: each column as wide as its widest cell, numbers right-aligned,
    nothing cut or wrapped (a code is shown whole)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(right))]
    lines = []
    for r in rows:
        cells = [
            c.rjust(w) if rt else c.ljust(w) for c, w, rt in zip(r, widths, right, strict=True)
        ]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def serial_table(frame: pl.DataFrame) -> list[str]:
    """One line per CMO (id and name), then one line per product: its code and counts."""
    if frame.is_empty():
        return ["Serial balance", "  (no rows)"]
    counts = [(c, label) for c, label in _SERIAL_COUNTS if c in frame.columns]
    header = ["product", *(label for _, label in counts)]
    right = [False, *(True for _ in counts)]
    rows: list[list[str]] = [header]
    groups: list[tuple[int, str]] = []  # (row index, CMO line) inserted before that row
    last = None
    for rec in frame.iter_rows(named=True):
        if rec["cmo_id"] != last:
            last = rec["cmo_id"]
            groups.append((len(rows), f"{rec['cmo_id']}  {_text(rec['cmo_name'])}".rstrip()))
        rows.append([rec["product_code"], *(_text(rec[c]) for c, _ in counts)])
    lines = _aligned(rows, right)
    for index, text in reversed(groups):
        lines.insert(index, text)
    legend = (
        "avail = available in the pool, unexp = assigned not exported, "
        "comm/ship/decomm = commissioned/shipped/decommissioned"
    )
    return ["Serial balance", *lines, *textwrap.wrap(f"({legend})", 80)]


def contract_table(frame: pl.DataFrame) -> list[str]:
    """One line per contract (id, type, customer), then one line per contract line."""
    if frame.is_empty():
        return ["Contract balance", "  (no rows)"]
    header = [label for _, label, _ in _LINE_COLUMNS]
    right = [rt for _, _, rt in _LINE_COLUMNS]
    rows: list[list[str]] = [header]
    groups: list[tuple[int, str]] = []
    last = None
    for rec in frame.iter_rows(named=True):
        if rec["contract_id"] != last:
            last = rec["contract_id"]
            who = f"  customer {rec['customer']}" if rec["customer"] else ""
            groups.append((len(rows), f"{rec['contract_id']}  {rec['contract_type']}{who}"))
        unit = _text(rec["contract_unit"]) + (
            f"x{rec['unit_factor']}" if rec["unit_factor"] not in (None, 1) else ""
        )
        cells = {**rec, "unit": unit, "flag": "EXPIRED" if rec["expired"] == "Y" else ""}
        rows.append([_text(cells[c]) for c, _, _ in _LINE_COLUMNS])
    lines = _aligned(rows, right)
    for index, text in reversed(groups):
        lines.insert(index, text)
    legend = (
        "wh = warehouse, st = status, qty = contract quantity in contract units (blank: no "
        "limit), recv/ncc/cons/avail = received/NCC/consumed/available in stock units"
    )
    return ["Contract balance", *lines, *textwrap.wrap(f"({legend})", 80)]


def as_table(frames: dict[str, pl.DataFrame]) -> str:
    parts = [
        "\n".join(serial_table(frames["serial_balance"])),
        "\n".join(contract_table(frames["contract_balance"])),
    ]
    return "\n\n".join(parts) + "\n"


def render(frames: dict[str, pl.DataFrame], fmt: str) -> str:
    if fmt == "json":
        return as_json(frames)
    if fmt == "csv":
        return as_csv(frames)
    return as_table(frames)
