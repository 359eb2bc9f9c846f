"""The link artifact of a flow run (SPEC §11: 'a link artifact the path of report.html')
points at a file that is there: the run's report.html, or its report folder when `[reports]
html = false` wrote none."""

from __future__ import annotations

from pathlib import Path

from flows.nightly import report_page_of
from tests.report_days import demo_day
from transforms.context import Config, InboxConfig, ReportsConfig


def test_the_link_is_report_html_when_the_run_wrote_it(tmp_path: Path) -> None:
    folder = demo_day(tmp_path)
    assert report_page_of(folder) == folder / "report.html"


def test_without_report_html_the_link_is_the_report_folder(tmp_path: Path) -> None:
    config = Config(inbox=InboxConfig(settle_seconds=0), reports=ReportsConfig(html=False))
    folder = demo_day(tmp_path, config)
    assert not (folder / "report.html").exists() and (folder / "report.xlsx").is_file()
    assert report_page_of(folder) == folder
