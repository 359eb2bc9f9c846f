"""report.html without a browser (SPEC §10.1): the verdict and its reasons, the page's
aggregates from the CSVs, a self-contained file, the same bytes for the same run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.report_days import clean_day, demo_day, read_csv, summary, trouble_day
from transforms import report_page


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pages")
    return {
        "demo": demo_day(base / "demo"),
        "trouble": trouble_day(base / "trouble"),
        "clean": clean_day(base / "clean"),
    }


def _summary(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "totals": {"files_quarantined": 0},
        "files": [{"name": "a.csv", "rows_rejected": 0}],
        "warnings": [],
        "invariants": {"serial_unique_per_product": True},
        "deliveries": {"delivered": 1, "failed": 0},
    }
    base.update(kw)
    return base


def test_the_verdict_is_all_good_only_when_nothing_needs_a_person() -> None:
    assert report_page.verdict(_summary()).title == "All good"
    assert report_page.verdict(_summary()).reasons == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"totals": {"files_quarantined": 2}}, "2 file(s) quarantined"),
        ({"files": [{"rows_rejected": 3}, {"rows_rejected": 0}, {"rows_rejected": 1}]},
         "4 row(s) rejected in 2 file(s)"),
        ({"deliveries": {"failed": 1}}, "1 delivery(ies) failed"),
        ({"invariants": {"a": True, "b": False}}, "invariant(s) failed: b"),
        ({"warnings": ["x", "y"]}, "2 warning(s)"),
    ],
)  # fmt: skip
def test_each_kind_of_trouble_needs_attention_and_says_why(
    change: dict[str, Any], reason: str
) -> None:
    verdict = report_page.verdict(_summary(**change))
    assert verdict.title == "Needs attention"
    assert verdict.reasons == [reason]


def test_rejects_are_grouped_by_file_and_rule_with_their_sentences() -> None:
    rejects = pl.DataFrame({
        "file": ["a.csv", "a.csv", "b.csv", "a.csv"], "line": [2, 5, 3, 9],
        "column": ["x", "x", "y", "z"], "value": ["1", "2", None, "3"],
        "rule": ["r1", "r1", "r1", "r2"], "message": ["m2", "m5", "m3", "m9"],
    })  # fmt: skip
    groups = report_page.reject_groups(rejects)
    assert [(g.file, g.rule, g.count, g.lines) for g in groups] == [
        ("a.csv", "r1", 2, "2, 5"), ("b.csv", "r1", 1, "3"), ("a.csv", "r2", 1, "9"),
    ]  # fmt: skip
    assert [e["message"] for e in groups[0].examples] == ["m2", "m5"]


def test_a_line_breaking_one_rule_twice_is_listed_once() -> None:
    """Two sentences of one row under the same rule (two of its columns): both counted and
    shown, its line named once."""
    rejects = pl.DataFrame({
        "file": ["a.csv"] * 3, "line": [5, 5, 7], "column": ["x", "y", "x"],
        "value": ["1", "2", "3"], "rule": ["r1"] * 3, "message": ["m5x", "m5y", "m7"],
    })  # fmt: skip
    (group,) = report_page.reject_groups(rejects)
    assert (group.count, group.lines) == (3, "5, 7")
    assert [e["message"] for e in group.examples] == ["m5x", "m5y", "m7"]


def test_charts_get_aggregates_never_one_point_per_serial_or_order_line() -> None:
    balance = pl.DataFrame({
        "cmo_id": ["A", "A", "B"], "cmo_name": ["a", "a", "b"], "product_code": ["1", "2", "1"],
        "product_name": ["p", "q", "p"], "available": [9, 9, 9], "assigned": [5_000_000, 7, 0],
        "assigned_not_exported": [4_000_000, 7, 0], "exported": [1_000_000, 0, 0],
        "requested": [0, 0, 3],
    })  # fmt: skip
    chart = report_page.serial_chart(balance)
    assert chart.rows() == [
        ("A", "assigned not exported", 4_000_007), ("A", "exported", 1_000_000),
        ("B", "requested", 3),
    ]  # fmt: skip
    orders = pl.DataFrame({"reason": [None] * 1000 + ["UNIT_MISMATCH"] * 3,
                           "quantity": [2] * 1000 + [5] * 3})  # fmt: skip
    assert report_page.allocation_reasons(orders).rows() == [
        ("linked", 1000, 2000),
        ("UNIT_MISMATCH", 3, 15),
    ]


def test_the_pages_of_the_three_days_say_what_they_should(days: dict[str, Path]) -> None:
    pages = {name: (folder / "report.html").read_text() for name, folder in days.items()}
    assert '<p class="title">All good</p>' in pages["clean"]
    for name in ("demo", "trouble"):
        assert '<p class="title">Needs attention</p>' in pages[name]
    trouble = pages["trouble"]
    assert "2 file(s) quarantined" in trouble and "2 warning(s)" in trouble
    # the verdict is the first thing after the title
    assert trouble.index('id="verdict"') < trouble.index('id="files"')
    # HTML in a name is shown as text, never run
    assert "<script>" not in trouble and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in trouble
    # expired lines are flagged
    expired = sum(r["expired"] == "Y" for r in read_csv(days["trouble"], "contract_balance.csv"))
    assert expired and f"{expired} expired line(s)" in trouble


def test_the_page_is_self_contained(days: dict[str, Path]) -> None:
    for folder in days.values():
        html = (folder / "report.html").read_text()
        assert "<script" not in html.lower().replace("&lt;script", "")
        assert "<link" not in html and "@import" not in html and "url(" not in html
        assert "<img" not in html and "<iframe" not in html
        # the only URIs are SVG's XML namespaces (names, never fetched)
        uris = set(re.findall(r"(?:https?|ftp|wss?)://[^\s\"'<>)]+", html))
        assert uris <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, uris
        assert "default-src 'none'" in html  # and the page forbids any request itself


def test_the_same_run_gives_the_same_bytes(tmp_path: Path) -> None:
    a, b = demo_day(tmp_path / "a"), demo_day(tmp_path / "b")
    for name in ("report.html", "report.xlsx"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "report.html").read_bytes().count(b"<svg") == 3  # the three charts


def test_the_summary_times_the_pages_when_they_are_made(tmp_path: Path) -> None:
    durations = summary(clean_day(tmp_path))["durations_s"]
    assert durations["report_pages"] > 0 and durations["reports"] > 0


def test_reports_can_be_turned_off(tmp_path: Path) -> None:
    from tests.pipeline_helpers import SETTLED
    from transforms.context import Config, ReportsConfig

    config = Config(inbox=SETTLED.inbox, reports=ReportsConfig(html=False, xlsx=False))
    folder = clean_day(tmp_path, config)
    assert not (folder / "report.html").exists() and not (folder / "report.xlsx").exists()
    assert (folder / "serial_balance.csv").exists()
    assert "report_pages" not in summary(folder)["durations_s"]


def test_the_chart_helper_draws_what_the_process_itself_draws() -> None:
    """The helper process (started with the night) and an in-process drawing give the same
    SVG; a helper that died is replaced by drawing in-process."""
    from connectors.report_charts import ChartRenderer, draw

    request = {
        "allocations": {"rows": [{"reason": "linked", "count": 3}, {"reason": "X", "count": 1}],
                        "linked": "linked"},
        "serials": {"rows": [], "domain": ["exported"]},
    }  # fmt: skip
    here = draw(request)
    assert here["serials"] is None and (here["allocations"] or "").startswith("<svg")
    helper = ChartRenderer()
    try:
        assert helper.draw(request) == here
        assert helper.process is not None  # it answered
    finally:
        helper.close()
    dead = ChartRenderer()
    assert dead.process is not None
    dead.process.kill()
    dead.process.wait()
    assert dead.draw(request) == here and dead.process is None


def test_a_night_without_chart_rows_does_not_wait_for_the_helper() -> None:
    """An empty night has no chart to draw: the answer comes at once, without the helper's
    JavaScript engine (it is still warming up: not ready, and never asked)."""
    from connectors.report_charts import ChartRenderer

    request = {
        "allocations": {"rows": [], "linked": "linked"},
        "serials": {"rows": [], "domain": ["exported"]},
        "shipping": {"rows": [], "domain": ["OK"]},
    }
    helper = ChartRenderer()
    try:
        assert helper.draw(request) == {"allocations": None, "serials": None, "shipping": None}
        assert not helper.warm  # it was not waited for
    finally:
        helper.close()
