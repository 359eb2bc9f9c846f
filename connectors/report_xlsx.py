"""Workbooks for people (SPEC §5.4, §10.1), written with XlsxWriter.

`report.xlsx`: one sheet per CSV report of the run folder, named after it, with the same
columns and rows; the header row frozen with filters; text (codes included) stored as
text, quantities as numbers, dates and date-times as dates.  The `.xlsx` twin of an
export file or partner answer: one sheet, every cell text.

Nothing is ever a formula or a number guessed from text (XlsxWriter's conversions are
off), and the workbook's dates come from the run's clock, so the same run gives the
same bytes.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import polars as pl
import xlsxwriter
from xlsxwriter.worksheet import Worksheet

MAX_ROWS = 1_048_575  # data rows on one sheet (Excel's limit, less the header)
_MAX_WIDTH = 60
_OPTIONS = {
    "strings_to_numbers": False,
    "strings_to_formulas": False,
    "strings_to_urls": False,
    "in_memory": True,
}


def _sheet_names(name: str, parts: int) -> list[str]:
    """`name`, cut to Excel's 31 characters; `name (2)` … for the rows past a sheet's limit."""
    base = name[:31]
    return [base] + [f"{name[: 31 - len(f' ({n})')]} ({n})" for n in range(2, parts + 1)]


def _widths(frame: pl.DataFrame) -> list[int]:
    """Each column as wide as its header (and the filter button) or its widest cell."""
    out = []
    for name in frame.columns:
        col = frame.get_column(name)
        if col.dtype == pl.Date:
            longest = 10
        elif col.dtype == pl.Datetime:
            longest = 19
        else:
            most = col.cast(pl.String).str.len_chars().max()
            longest = int(most) if isinstance(most, int) else 0
        out.append(min(max(len(name) + 3, longest + 1), _MAX_WIDTH))
    return out


class _Book:
    def __init__(self, created: dt.datetime) -> None:
        self.buffer = io.BytesIO()
        self.book = xlsxwriter.Workbook(self.buffer, _OPTIONS)
        self.book.set_properties({"created": created})
        self.header = self.book.add_format({"bold": True})
        self.date = self.book.add_format({"num_format": "yyyy-mm-dd"})
        self.datetime = self.book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})

    def _writer(self, sheet: Worksheet, dtype: pl.DataType, text_only: bool) -> Callable[..., Any]:
        if text_only:
            return sheet.write_string
        if dtype == pl.Date:
            return lambda r, c, v: sheet.write_datetime(r, c, v, self.date)
        if dtype == pl.Datetime:
            return lambda r, c, v: sheet.write_datetime(r, c, v, self.datetime)
        if dtype.is_integer() or dtype.is_float():
            return sheet.write_number
        return lambda r, c, v: sheet.write_string(r, c, str(v))

    def add(self, name: str, frame: pl.DataFrame, *, text_only: bool = False) -> None:
        """The frame on one sheet (or more, past Excel's row limit), header frozen, filters."""
        parts = max(1, -(-frame.height // MAX_ROWS))
        widths = _widths(frame)
        for part, sheet_name in enumerate(_sheet_names(name, parts)):
            rows = frame.slice(part * MAX_ROWS, MAX_ROWS)
            sheet = self.book.add_worksheet(sheet_name)
            sheet.write_row(0, 0, frame.columns, self.header)
            for c, width in enumerate(widths):
                sheet.set_column(c, c, width)
            sheet.freeze_panes(1, 0)
            sheet.autofilter(0, 0, rows.height, max(frame.width - 1, 0))  # header and rows
            writers = [self._writer(sheet, dtype, text_only) for dtype in frame.dtypes]
            for c, (write, column) in enumerate(zip(writers, rows.iter_columns(), strict=True)):
                for r, value in enumerate(column, start=1):
                    if value is not None:
                        write(r, c, value)

    def close(self) -> bytes:
        self.book.close()
        return self.buffer.getvalue()


def report_workbook(reports: dict[str, pl.DataFrame], created: dt.datetime) -> bytes:
    """`report.xlsx`: one sheet per report (`connectors.report_files.read_run_reports`)."""
    book = _Book(created)
    for name, frame in reports.items():
        book.add(name, frame)
    return book.close()


def serial_twin(rows: pl.DataFrame, created: dt.datetime) -> bytes:
    """The `.xlsx` twin of an export file or partner answer (§5.4): one sheet, the same
    header and rows, every cell text."""
    book = _Book(created)
    book.add("serials", rows.select("product_code", "serial"), text_only=True)
    return book.close()
