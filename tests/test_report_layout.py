"""report.html usable at 1280 px and on a phone (SPEC §10.1), in Debian's chromium:

- a date is never broken over two lines ("2026-" above "11-03"), at either width;
- at 1280 px the page uses the width it has: the demo day's files, serial balance, export
  files, allocation and lot tables fit without scrolling sideways, and the contract
  balance's expired flag is in view without scrolling (the widest tables, contract balance
  and shipping, scroll inside their box);
- on a phone (390 px) each file of the night is a short block with why it was quarantined
  in view, the charts keep a readable size — drawn at their own scale inside a
  box that scrolls sideways, not shrunk to half (5 px labels) — and the page itself never
  scrolls sideways."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report_days import demo_day, trouble_day
from tests.servers.chromium import Chromium

pytestmark = pytest.mark.e2e

_OVERFLOW = """Object.fromEntries([...document.querySelectorAll('.scroll')].map(
    (s) => [s.querySelector('table').dataset.report, s.scrollWidth - s.clientWidth]))"""
_SCALES = """[...document.querySelectorAll('.chart svg')].map(
    (s) => s.getBoundingClientRect().width / s.width.baseVal.value)"""
_WRAPPED_DATES = """[...document.querySelectorAll(['reception_date', 'start_date', 'end_date',
    'expiry', 'delivered_at'].map((c) => `td[data-col="${c}"]`).join(','))].filter((td) => {
    const range = document.createRange();
    range.selectNodeContents(td);
    return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size > 1;
}).map((td) => td.dataset.col + ' ' + td.textContent)"""
_EXPIRED_IN_VIEW = """(() => {
    const box = document.querySelector('[data-report="contract_balance.csv"]').parentElement
        .getBoundingClientRect();
    const cells = [...document.querySelectorAll(
        '[data-report="contract_balance.csv"] [data-col="expired"] .flag')];
    return [cells.length, cells.filter((c) => c.getBoundingClientRect().right > box.right).length];
})()"""


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layout")
    return {"demo": demo_day(base / "demo"), "trouble": trouble_day(base / "trouble")}


def test_at_1280_px_the_tables_use_the_width_and_expired_lines_are_in_view(
    chromium: Chromium, days: dict[str, Path]
) -> None:
    tab = chromium.open((days["demo"] / "report.html").as_uri(), 1280)
    try:
        overflow = tab.evaluate(_OVERFLOW)
        for name in ("run_summary.json#files", "serial_balance.csv", "exported_files.csv",
                     "allocations.csv#reasons", "lot_reconciliation.csv"):  # fmt: skip
            assert overflow[name] <= 0, (name, overflow)
    finally:
        tab.close()
    tab = chromium.open((days["trouble"] / "report.html").as_uri(), 1280)
    try:
        flagged, hidden = tab.evaluate(_EXPIRED_IN_VIEW)
        assert flagged > 0 and hidden == 0, (flagged, hidden)
    finally:
        tab.close()


def test_on_a_phone_the_charts_stay_readable_and_the_page_does_not_scroll_sideways(
    chromium: Chromium, days: dict[str, Path]
) -> None:
    tab = chromium.open((days["demo"] / "report.html").as_uri(), 390)
    try:
        scales = tab.evaluate(_SCALES)
        assert len(scales) == 3 and min(scales) >= 0.9, scales
        assert tab.evaluate("document.documentElement.scrollWidth") <= 390
        assert tab.errors == []
    finally:
        tab.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_no_date_is_broken_over_two_lines(
    chromium: Chromium, days: dict[str, Path], width: int
) -> None:
    tab = chromium.open((days["trouble"] / "report.html").as_uri(), width)
    try:
        assert tab.evaluate("document.querySelectorAll('td[data-col=end_date]').length") > 0
        assert tab.evaluate(_WRAPPED_DATES) == []
    finally:
        tab.close()


_REASONS_OUT_OF_VIEW = """[...document.querySelectorAll(
    '[data-report="run_summary.json#files"] [data-col="reason"]')].filter((td) => td.textContent)
    .map((td) => [td.textContent.slice(0, 40), td.getBoundingClientRect().left,
                  td.getBoundingClientRect().right])
    .filter(([, left, right]) => left < 0 || right > window.innerWidth)"""


def test_on_a_phone_why_a_file_was_quarantined_is_in_view(
    chromium: Chromium, days: dict[str, Path]
) -> None:
    """The reason of a quarantined (or duplicate) file is what a person acts on: on a phone
    it is shown under the file, not in a column past the screen's edge."""
    tab = chromium.open((days["trouble"] / "report.html").as_uri(), 390)
    try:
        reasons = tab.evaluate(
            '[...document.querySelectorAll(\'[data-report="run_summary.json#files"] '
            '[data-col="reason"]\')].filter((td) => td.textContent).length'
        )
        assert reasons == 3  # two quarantined files and a duplicate
        assert tab.evaluate(_REASONS_OUT_OF_VIEW) == []
        assert tab.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        tab.close()
