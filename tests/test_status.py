"""`cmi status` (SPEC §1): table, CSV and JSON; the filters; a store it only reads; exit 3
during a run naming the latest report folder."""

from __future__ import annotations

import csv as csvlib
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.store import open_store
from flows.cli import app
from flows.pipeline import _holder_note
from flows.run_state import RunPaths
from schemas.contracts import REPORT_COLUMNS
from transforms.reports import SERIAL_BALANCE_COLUMNS

runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo day's folder (inbox, outbox, state), run once for the module."""
    root = tmp_path_factory.mktemp("status") / "demo"
    result = runner.invoke(app, ["demo", "--dir", str(root)])
    assert result.exit_code == 0, result.output
    return root


def _status(demo: Path, *extra: str) -> str:
    result = runner.invoke(app, ["status", "--state", str(demo / "state" / "cmi.duckdb"), *extra])
    assert result.exit_code == 0, result.output
    return result.output


def _sections(text: str) -> dict[str, list[dict[str, str]]]:
    """The CSV output cut at its `# <name>` lines, each section read as CSV."""
    parts = re.split(r"^# (\w+)\n", text, flags=re.MULTILINE)
    assert parts[0] == ""
    out = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        reader = csvlib.DictReader(io.StringIO(body))
        out[name] = list(reader)
        assert reader.fieldnames is not None
        out[name + ":columns"] = list(reader.fieldnames)  # type: ignore[assignment]
    return out


def _report(demo: Path, name: str) -> list[dict[str, str]]:
    latest = (demo / "outbox" / "reports" / "LATEST").read_text()
    return list(csvlib.DictReader((demo / "outbox" / "reports" / latest / name).open()))


def test_csv_prints_each_balance_under_its_name_with_the_report_columns(demo: Path) -> None:
    got = _sections(_status(demo, "--format", "csv"))
    assert got["serial_balance:columns"] == SERIAL_BALANCE_COLUMNS
    assert got["contract_balance:columns"] == REPORT_COLUMNS["contract_balance.csv"]
    assert got["serial_balance"] == _report(demo, "serial_balance.csv")
    assert len(got["contract_balance"]) == len(_report(demo, "contract_balance.csv"))


def test_filters_narrow_only_the_balances_they_name(demo: Path) -> None:
    serial = _report(demo, "serial_balance.csv")
    contract = _report(demo, "contract_balance.csv")
    only_cmo = _sections(_status(demo, "--format", "csv", "--cmo", "ACME-01"))
    assert only_cmo["serial_balance"] == [r for r in serial if r["cmo_id"] == "ACME-01"]
    assert len(only_cmo["contract_balance"]) == len(contract)  # not named: printed whole
    code = "04034567000018"
    by_product = _sections(_status(demo, "--format", "csv", "--product", code))
    assert by_product["serial_balance"] == [r for r in serial if r["product_code"] == code]
    items = [r["contract_id"] for r in by_product["contract_balance"]]
    assert items == [r["contract_id"] for r in contract if r["item"] == code] and items
    one = _sections(_status(demo, "--format", "csv", "--contract", "SCS-SUP-01"))
    assert {r["contract_id"] for r in one["contract_balance"]} == {"SCS-SUP-01"}
    assert one["serial_balance"] == serial
    both = _sections(_status(demo, "--format", "csv", "--cmo", "PACKRIGHT", "--product", code))
    assert [(r["cmo_id"], r["product_code"]) for r in both["serial_balance"]] == [
        ("PACKRIGHT", code)
    ]


def test_json_has_one_object_per_row_keyed_by_the_columns(demo: Path) -> None:
    data = json.loads(_status(demo, "--format", "json", "--cmo", "ACME-01"))
    assert list(data) == ["serial_balance", "contract_balance"]
    rows = data["serial_balance"]
    assert [list(r) for r in rows] == [SERIAL_BALANCE_COLUMNS] * len(rows)
    want = [r for r in _report(demo, "serial_balance.csv") if r["cmo_id"] == "ACME-01"]
    assert [r["product_code"] for r in rows] == [r["product_code"] for r in want]
    assert rows[0]["product_code"] == "04034567000018"  # a code stays a string
    assert all(isinstance(r["available"], int) for r in rows)
    assert [r["available"] for r in rows] == [int(r["available"]) for r in want]
    lines = data["contract_balance"]
    assert list(lines[0]) == REPORT_COLUMNS["contract_balance.csv"]
    assert any(r["contract_quantity"] is None for r in lines)  # blank = no limit


def test_table_is_compact_and_numbers_are_right_aligned(demo: Path) -> None:
    text = _status(demo, "--format", "table")
    serial = _report(demo, "serial_balance.csv")
    cmos = {r["cmo_id"] for r in serial}
    lines = text.splitlines()
    block = lines[: lines.index("")]
    # a title, a header, one line per CMO and per row, a legend of at most two lines
    assert len(block) <= 2 + len(cmos) + len(serial) + 2
    assert max(len(line) for line in block) <= 80
    header = block[1]
    rows = [line for line in block if re.match(r"^  \d{14} ", line)]
    assert len(rows) == len(serial)
    for label in ("avail", "assign", "unexp", "ship"):
        end = header.index(label) + len(label)
        for row in rows:  # every number ends under the end of its label
            assert row[end - 1].isdigit() and (end == len(row) or row[end] == " "), (label, row)
    acme = next(r for r in serial if r["cmo_id"] == "ACME-01")
    line = next(row for row in rows if row.split()[0] == acme["product_code"])
    assert line.split()[1:] == [acme[c] for c in SERIAL_BALANCE_COLUMNS[4:]]
    assert "EXPIRED" in text or all(
        r["expired"] == "N" for r in _report(demo, "contract_balance.csv")
    )


def test_a_format_that_does_not_exist_is_exit_2(demo: Path) -> None:
    state = str(demo / "state" / "cmi.duckdb")
    result = runner.invoke(app, ["status", "--state", state, "--format", "xml"])
    assert result.exit_code == 2 and "--format 'xml'" in result.output


def test_status_only_reads_the_store(demo: Path) -> None:
    state = demo / "state"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in state.iterdir()}
    _status(demo, "--format", "json")
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in state.iterdir()}
    assert after == before


def test_during_a_run_status_is_exit_3_naming_the_latest_report_folder(demo: Path) -> None:
    path = demo / "state" / "cmi.duckdb"
    store = open_store(path)
    paths = RunPaths(demo / "inbox", demo / "outbox", path)
    try:
        store.note_holder(_holder_note(paths, "20261124T020000"))
        result = runner.invoke(app, ["status", "--state", str(path)])
    finally:
        store.close()
    latest = (demo / "outbox" / "reports" / "LATEST").read_text()
    assert result.exit_code == 3, result.output
    assert str((demo / "outbox" / "reports" / latest).resolve()) in result.output
    assert "Traceback" not in result.output
