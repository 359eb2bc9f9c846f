"""report.xlsx's filters cover exactly each sheet's header and rows (SPEC §10.1 'header row
frozen with filters'): a report without rows (deliveries.csv on most nights) has its filter
on the header alone, not on an empty row below it."""

from __future__ import annotations

import datetime as dt
import io

import openpyxl
import polars as pl

from connectors.report_xlsx import report_workbook

DELIVERIES = ["cmo_id", "file_name", "url", "outcome", "attempts", "delivered_at", "message"]


def test_each_sheets_filter_is_its_header_and_rows() -> None:
    reports = {
        "rejects": pl.DataFrame({"file": ["a.csv", "b.csv"], "line": [2, 3]}),
        "deliveries": pl.DataFrame(schema={c: pl.String for c in DELIVERIES}),
    }
    book = openpyxl.load_workbook(io.BytesIO(report_workbook(reports, dt.datetime(2026, 11, 23))))
    assert book["rejects"].auto_filter.ref == "A1:B3" == book["rejects"].dimensions
    assert book["deliveries"].auto_filter.ref == "A1:G1" == book["deliveries"].dimensions
    assert [c.value for c in book["deliveries"][1]] == DELIVERIES
    assert book["deliveries"].freeze_panes == "A2"
