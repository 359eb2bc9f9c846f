"""`report.html` (SPEC §10.1): the page of `transforms.report_page` written with a Jinja2
template, with the charts of `connectors.report_charts` inline — no script, font or
request leaves the file, and the same run gives the same bytes (no wall clock is shown).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import polars as pl

from connectors.report_charts import ChartRenderer, draw
from transforms.report_page import HOLDINGS, LINKED, SHIPPING_OUTCOMES, Page

TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def chart_request(page: Page) -> dict[str, Any]:
    """The page's aggregates as `connectors.report_charts.draw` takes them."""

    def rows(frame: pl.DataFrame, keys: list[str], count: str) -> list[dict[str, Any]]:
        return frame.select(*keys, pl.col(count).alias("count")).to_dicts()

    return {
        "serials": {"rows": rows(page.serial_chart, ["cmo_id", "status"], "serials"),
                    "domain": [label for _, label in HOLDINGS]},
        "allocations": {"rows": rows(page.allocation_reasons, ["reason"], "order_lines"),
                        "linked": LINKED},
        "shipping": {"rows": rows(page.shipping_chart, ["file", "outcome"], "serials"),
                     "domain": [o for _, o in SHIPPING_OUTCOMES]},
    }  # fmt: skip


def render_page(
    page: Page, version: str, renderer: ChartRenderer | None = None, *, workbook: bool = True
) -> bytes:
    """The page's bytes: the template filled with the page and its charts (drawn by
    `renderer`'s helper process when given, else in-process); `workbook`: whether a
    report.xlsx is written beside it (the page says so only then)."""
    request = chart_request(page)
    charts = renderer.draw(request) if renderer is not None else draw(request)
    shipping_columns = list(page.shipping[0]) if page.shipping else []
    lot_columns = {
        "decommissioned": bool(page.lots and "decommissioned" in page.lots[0]["lots"][0])
    }
    html = (
        _environment()
        .get_template("report.html.j2")
        .render(page=page, charts=charts, version=version, shipping_columns=shipping_columns,
                lot_columns=lot_columns, workbook=workbook)
    )  # fmt: skip
    return str(html).encode("utf-8")
