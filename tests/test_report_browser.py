"""report.html in a real browser (SPEC §10.1): Debian's chromium, headless, with the
network blocked, opens the page of the demo day and of a day with every kind of trouble
at 1280 and 390 CSS pixels: no console error, no request leaves the page, a non-empty
screenshot (the demo day's are kept as test artifacts), no page wider than the screen,
and the numbers read from the DOM equal the CSV reports'."""

from __future__ import annotations

import datetime as dt
import os
import struct
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.report_days import demo_day, read_csv, summary, trouble_day
from tests.servers.chromium import Chromium, Tab

pytestmark = pytest.mark.e2e
WIDTHS = (1280, 390)
ARTIFACTS = Path(
    os.environ.get("CMI_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "cmi-test-artifacts"
)

# every table of the page that shows rows of a CSV report: its rows and cells as text
_TABLE_ROWS = """(name) => [...document.querySelectorAll(`[data-report="${name}"] [data-row]`)].map(
    (row) => Object.fromEntries([...row.querySelectorAll("[data-col]")].map(
        (cell) => [cell.dataset.col, cell.textContent.trim()])))"""


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("browser")
    return {"demo": demo_day(base / "demo"), "trouble": trouble_day(base / "trouble")}


def _rows(tab: Tab, name: str) -> list[dict[str, str]]:
    return list(tab.evaluate(f"({_TABLE_ROWS})({name!r})"))


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _same(dom: list[dict[str, str]], csv: list[dict[str, str]], columns: list[str]) -> None:
    """Every row of the page equals its CSV row in these columns (a blank cell: '' or —)."""
    assert len(dom) == len(csv)
    for got, want in zip(dom, csv, strict=True):
        for c in columns:
            if c in got:
                shown = got[c] if got[c] not in ("—",) else ""
                assert shown == want[c].lstrip("'") if want[c][:1] == "'" else shown == want[c], (
                    c,
                    got,
                    want,
                )


@pytest.mark.parametrize("day", ["demo", "trouble"])
@pytest.mark.parametrize("width", WIDTHS)
def test_the_page_opens_offline_without_errors_and_fits_the_screen(
    chromium: Chromium, days: dict[str, Path], day: str, width: int
) -> None:
    page = days[day] / "report.html"
    tab = chromium.open(page.as_uri(), width)
    try:
        assert tab.errors == []
        assert tab.requests == [page.as_uri()]  # the page itself, nothing else
        assert tab.evaluate("document.documentElement.scrollWidth") <= width  # no sideways page
        verdict = tab.evaluate("document.querySelector('main section').dataset.verdict")
        assert verdict == "Needs attention"
        assert tab.evaluate("document.querySelector('.verdict .title').textContent") == verdict
        folder = ARTIFACTS / "report-screenshots" if day == "demo" else Path(tempfile.mkdtemp())
        shot = tab.screenshot(folder / f"{day}-{width}.png")
        w, h = _png_size(shot)
        assert w == width and h > 1000 and len(shot) > 20_000
        assert tab.evaluate("document.querySelectorAll('.chart svg').length") == 3
        assert tab.errors == []
    finally:
        tab.close()


@pytest.mark.parametrize("day", ["demo", "trouble"])
def test_the_numbers_on_the_page_equal_the_csv_reports(
    chromium: Chromium, days: dict[str, Path], day: str
) -> None:
    folder = days[day]
    tab = chromium.open((folder / "report.html").as_uri(), 1280)
    try:
        _check_numbers(tab, folder)
    finally:
        tab.close()


def _check_numbers(tab: Tab, folder: Path) -> None:
    info: dict[str, Any] = summary(folder)
    totals = tab.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-total]')]"
        ".map((e) => [e.dataset.total, Number(e.textContent)]))"
    )
    assert totals == info["totals"]
    files = _rows(tab, "run_summary.json#files")
    assert [(f["name"], f["outcome"], int(f["rows_read"]), int(f["rows_applied"]),
             int(f["rows_rejected"])) for f in files] == [
        (f["name"], f["outcome"], f["rows_read"], f["rows_applied"], f["rows_rejected"])
        for f in info["files"]
    ]  # fmt: skip

    rejects = read_csv(folder, "rejects.csv")
    groups = _rows(tab, "rejects.csv#groups")
    want = Counter((r["file"], r["rule"]) for r in rejects)
    assert {(g["file"], g["rule"]): int(g["count"]) for g in groups} == dict(want)

    balance = read_csv(folder, "serial_balance.csv")
    _same(_rows(tab, "serial_balance.csv"), balance, list(balance[0]))
    assert tab.evaluate("document.querySelectorAll('[data-report=\"serial_balance.csv\"] "
                        "tr.group').length") == len({r["cmo_id"] for r in balance})  # fmt: skip

    as_of = dt.datetime.fromisoformat(info["as_of"]).isoformat(timespec="seconds")
    exports = [r for r in read_csv(folder, "exported_files.csv") if r["created"] == as_of]
    _same(_rows(tab, "exported_files.csv"), exports, list(exports[0]) if exports else [])

    allocations = read_csv(folder, "allocations.csv")
    reasons = Counter(r["reason"] or "linked" for r in allocations)
    shown = {r["reason"]: int(r["order_lines"]) for r in _rows(tab, "allocations.csv#reasons")}
    assert shown == dict(reasons)

    contract = read_csv(folder, "contract_balance.csv")
    rows = _rows(tab, "contract_balance.csv")
    _same(rows, contract, [c for c in contract[0] if c != "expired"])
    assert [r["expired"] == "expired" for r in rows] == [r["expired"] == "Y" for r in contract]

    shipping = read_csv(folder, "shipping_reconciliation.csv")
    _same(
        _rows(tab, "shipping_reconciliation.csv"), shipping, list(shipping[0]) if shipping else []
    )

    lots = read_csv(folder, "lot_reconciliation.csv")
    _same(_rows(tab, "lot_reconciliation.csv"), lots,
          ["lot", "expiry", "commissioned", "shipped", "decommissioned", "exceptions"])  # fmt: skip
    assigned = tab.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-assigned]')]"
        ".map((e) => [e.dataset.assigned, e.textContent]))"
    )
    by_pair = {f"{r['cmo_id']}|{r['product_code']}": r["assigned"] for r in balance}
    assert assigned and all(by_pair.get(k, "—") == v for k, v in assigned.items())
