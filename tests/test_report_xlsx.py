"""report.xlsx and the .xlsx twins read back with other libraries (SPEC §5.4, §10.1):
one sheet per CSV report with its header and rows, codes as text keeping their leading
zeros, quantities as numbers, dates as dates, nothing a formula."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import fastexcel
import openpyxl
import pytest

from schemas.report_types import DATES, DATETIMES, QUANTITIES
from tests.pipeline_helpers import SETTLED
from tests.report_days import DAY, NEXT, demo_day, read_csv, trouble_day
from transforms.context import Config, ReportsConfig


@pytest.fixture(scope="module")
def trouble(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trouble_day(tmp_path_factory.mktemp("xlsx") / "trouble")


def _unguard(text: str) -> str:
    """A CSV cell as the workbook holds it: without the `'` before formula-like text."""
    return text[1:] if len(text) > 1 and text[0] == "'" and text[1] in "=+-@\t\r" else text


def test_one_sheet_per_csv_report_with_its_header_and_rows(trouble: Path) -> None:
    book = openpyxl.load_workbook(trouble / "report.xlsx")
    names = sorted(p.stem for p in trouble.glob("*.csv"))
    assert sorted(book.sheetnames) == names
    for name in names:
        rows = read_csv(trouble, f"{name}.csv")
        sheet = book[name]
        header = [c.value for c in sheet[1]]
        with (trouble / f"{name}.csv").open() as fh:
            assert header == fh.readline().rstrip("\n").split(",")
        assert sheet.max_row == len(rows) + 1, name
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref and sheet.auto_filter.ref.startswith("A1:")
        for row, want in zip(sheet.iter_rows(min_row=2, values_only=True), rows, strict=True):
            for column, value in zip(header, row, strict=True):
                text = want[column]
                if column in QUANTITIES:
                    assert value == (int(text) if text else None), (name, column)
                elif column in DATES and text or column in DATETIMES and text:
                    assert value == dt.datetime.fromisoformat(text), (name, column)
                else:
                    assert value == (_unguard(text) if text else None), (name, column)


def test_codes_are_text_that_keeps_its_leading_zeros(trouble: Path) -> None:
    """Read by another reader too (fastexcel, what polars uses): a GTIN stays a string."""
    reader = fastexcel.read_excel(trouble / "report.xlsx")
    balance = reader.load_sheet_by_name("serial_balance").to_polars()
    assert balance.schema["product_code"].is_(__import__("polars").String)
    assert "04034567000018" in balance.get_column("product_code").to_list()
    assert balance.schema["available"].is_numeric()
    book = openpyxl.load_workbook(trouble / "report.xlsx")
    for cell in book["serial_balance"]["C"][1:]:
        assert cell.data_type == "s" and len(cell.value) == 14
    lots = book["lot_reconciliation"]
    assert lots["D2"].is_date and lots["E2"].data_type == "n"


def test_text_a_spreadsheet_would_run_is_stored_as_text_not_a_formula(trouble: Path) -> None:
    book = openpyxl.load_workbook(trouble / "report.xlsx")
    cells = [c for row in book["allocations"].iter_rows(min_row=2) for c in row]
    customer = next(c for c in cells if isinstance(c.value, str) and c.value.startswith("-cmd"))
    assert customer.data_type == "s"  # not "f"
    assert all(c.data_type != "f" for s in book for row in s.iter_rows() for c in row)


def test_the_workbook_is_dated_by_the_run_clock(trouble: Path) -> None:
    book = openpyxl.load_workbook(trouble / "report.xlsx")
    assert book.properties.created == NEXT


def test_partner_xlsx_writes_a_text_twin_beside_every_export_and_answer(tmp_path: Path) -> None:
    config = Config(inbox=SETTLED.inbox, reports=ReportsConfig(partner_xlsx=True))
    demo_day(tmp_path, config)
    outbox = tmp_path / "outbox"
    csvs = sorted([*outbox.glob("serials/*/*.csv"), *outbox.glob("partners/*/*.csv")])
    assert csvs and sorted(outbox.rglob("*.xlsx")) == sorted(
        [p.with_suffix(".xlsx") for p in csvs] + list(outbox.glob("reports/*/report.xlsx"))
    )
    for path in csvs:
        book = openpyxl.load_workbook(path.with_suffix(".xlsx"))
        assert len(book.sheetnames) == 1
        rows = list(book.active.iter_rows(values_only=True))  # type: ignore[union-attr]
        lines = path.read_text().splitlines()
        assert rows[0] == ("product_code", "serial") and len(rows) == len(lines)
        assert all(isinstance(v, str) for row in rows for v in row)
        assert [",".join(r) for r in rows[1:3]] == lines[1:3]  # (no quoting in the demo's)
        assert book.properties.created == DAY


def test_without_partner_xlsx_there_is_no_twin(tmp_path: Path) -> None:
    demo_day(tmp_path)
    assert not list((tmp_path / "outbox").glob("serials/*/*.xlsx"))
