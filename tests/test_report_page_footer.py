"""report.html names report.xlsx only when the run wrote it (SPEC §10.1: `[reports]` turns
either off): with `xlsx = false` the page does not send a person to a workbook that is
not there."""

from __future__ import annotations

from pathlib import Path

from tests.report_days import demo_day
from transforms.context import Config, InboxConfig, ReportsConfig


def test_the_page_names_report_xlsx_only_when_it_was_written(tmp_path: Path) -> None:
    with_book = demo_day(tmp_path / "with")
    assert (with_book / "report.xlsx").is_file()
    assert "report.xlsx" in (with_book / "report.html").read_text(encoding="utf-8")

    config = Config(inbox=InboxConfig(settle_seconds=0), reports=ReportsConfig(xlsx=False))
    without = demo_day(tmp_path / "without", config)
    assert not (without / "report.xlsx").exists()
    assert "report.xlsx" not in (without / "report.html").read_text(encoding="utf-8")
