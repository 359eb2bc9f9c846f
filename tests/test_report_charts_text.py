"""The charts of report.html show every code in full (SPEC §10.1 'Codes are shown in full'):
no axis label is cut short with '…', and none is clipped by the edge of its chart when a
browser draws it with the fonts it has (Debian's chromium: DejaVu Sans, wider than the
fonts the chart was laid out with before)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connectors.report_charts import draw
from tests.report_days import demo_day
from tests.servers.chromium import Chromium

LONG = "shipping_acme_pharma_manufacturing_gmbh_site_lyon_outbound_20261123_0001.xml"

# every <text> of every chart that reaches beyond its <svg>'s box (a clipped label)
_CLIPPED = """[...document.querySelectorAll('.chart svg')].flatMap((svg) => {
    const box = svg.getBoundingClientRect();
    return [...svg.querySelectorAll('text')].filter((t) => {
        const r = t.getBoundingClientRect();
        return r.left < box.left - 0.5 || r.right > box.right + 0.5;
    }).map((t) => t.textContent);
})"""


def _texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_a_long_document_name_is_drawn_in_full() -> None:
    rows = [{"file": LONG, "outcome": "OK", "count": 3}, {"file": "b.xml", "outcome": "OK",
                                                          "count": 1}]  # fmt: skip
    svg = draw({"shipping": {"rows": rows, "domain": ["OK"]}})["shipping"]
    assert svg is not None
    assert LONG in _texts(svg)
    assert not any("…" in t for t in _texts(svg))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_day(tmp_path_factory.mktemp("charts"))


@pytest.mark.e2e
@pytest.mark.parametrize("width", [1280, 390])
def test_no_chart_label_is_clipped_in_a_browser(chromium: Chromium, demo: Path, width: int) -> None:
    tab = chromium.open((demo / "report.html").as_uri(), width)
    try:
        assert tab.evaluate("document.querySelectorAll('.chart svg').length") == 3
        assert tab.evaluate(_CLIPPED) == []
        assert tab.errors == []
    finally:
        tab.close()
