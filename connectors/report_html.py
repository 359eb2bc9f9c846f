"""`report.html` (SPEC §10.1): the page of `transforms.report_page` written with a Jinja2
template, its charts drawn by Altair (Vega-Lite) and rendered to inline SVG by
vl-convert — no script, font or request leaves the file, and the same run gives the
same bytes (the SVG of a spec is deterministic; no wall clock is shown).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import polars as pl

from transforms.report_page import HOLDINGS, LINKED, SHIPPING_OUTCOMES, Page

TEMPLATES = Path(__file__).parent / "templates"
_WIDTH = 520
_STEP = 22
_FONT = "Helvetica, Arial, sans-serif"
_VL_VERSION = (
    "6.4"  # the Vega-Lite of Altair's schema (altair.SCHEMA_VERSION), bundled in vl-convert
)

_HOLDING_COLORS = ["#4c78a8", "#72b7b2", "#b279a2"]
_OUTCOME_COLORS = ["#2e7d32", "#c62828", "#ef6c00", "#8e24aa", "#6d4c41", "#1565c0"]


@functools.cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
        keep_trailing_newline=True,
    )


def _svg(chart: Any) -> str:
    import vl_convert

    svg: str = vl_convert.vegalite_to_svg(chart.to_dict(), vl_version=_VL_VERSION)
    return svg


def _config(chart: Any) -> Any:
    return chart.configure(font=_FONT).configure_view(stroke=None)


def _bars(frame: pl.DataFrame, y: str, x: str, color: str, domain: list[str],
          colors: list[str], x_title: str) -> Any:  # fmt: skip
    import altair as alt

    order = frame.get_column(y).unique(maintain_order=True).to_list()
    chart = (
        alt.Chart(alt.Data(values=frame.to_dicts()))
        .mark_bar()
        .encode(
            y=alt.Y(f"{y}:N", sort=order, title=None, axis=alt.Axis(labelLimit=260)),
            x=alt.X(f"sum({x}):Q", title=x_title, axis=alt.Axis(format="d", tickMinStep=1)),
            color=alt.Color(
                f"{color}:N",
                scale=alt.Scale(domain=domain, range=colors[: len(domain)]),
                legend=alt.Legend(
                    orient="bottom",
                    title=None,
                    direction="horizontal",
                    labelLimit=240,
                    columnPadding=18,
                    columns=3,
                ),
            ),
            order=alt.Order(f"{color}_order:Q"),
        )
        .transform_calculate(**{f"{color}_order": _order_expr(color, domain)})
        .properties(width=_WIDTH, height=alt.Step(_STEP))
    )
    return _config(chart)


def _order_expr(field: str, domain: list[str]) -> str:
    return "indexof(" + repr(domain).replace("'", '"') + f", datum.{field})"


def serial_chart(frame: pl.DataFrame) -> str | None:
    if frame.height == 0:
        return None
    domain = [label for _, label in HOLDINGS]
    return _svg(_bars(frame, "cmo_id", "serials", "status", domain, _HOLDING_COLORS, "serials"))


def allocation_chart(frame: pl.DataFrame) -> str | None:
    if frame.height == 0:
        return None
    import altair as alt

    order = frame.get_column("reason").to_list()
    chart = (
        alt.Chart(alt.Data(values=frame.select("reason", "order_lines").to_dicts()))
        .mark_bar()
        .encode(
            y=alt.Y("reason:N", sort=order, title=None, axis=alt.Axis(labelLimit=260)),
            x=alt.X("order_lines:Q", title="order lines", axis=alt.Axis(format="d", tickMinStep=1)),
            color=alt.condition(
                alt.datum.reason == LINKED, alt.value("#2e7d32"), alt.value("#ef6c00")
            ),
        )
        .properties(width=_WIDTH, height=alt.Step(_STEP))
    )
    return _svg(_config(chart))


def shipping_chart(frame: pl.DataFrame) -> str | None:
    if frame.height == 0:
        return None
    domain = [o for _, o in SHIPPING_OUTCOMES]
    return _svg(_bars(frame, "file", "serials", "outcome", domain, _OUTCOME_COLORS, "SGTINs"))


def render_page(page: Page, version: str) -> bytes:
    """The page's bytes: the template filled with the page and its charts."""
    charts = {
        "serials": serial_chart(page.serial_chart),
        "allocations": allocation_chart(page.allocation_reasons),
        "shipping": shipping_chart(page.shipping_chart),
    }
    shipping_columns = list(page.shipping[0]) if page.shipping else []
    lot_columns = {
        "decommissioned": bool(page.lots and "decommissioned" in page.lots[0]["lots"][0])
    }
    html = (
        _environment()
        .get_template("report.html.j2")
        .render(page=page, charts=charts, version=version, shipping_columns=shipping_columns,
                lot_columns=lot_columns)
    )  # fmt: skip
    return str(html).encode("utf-8")


def warm_up() -> threading.Thread:
    """Import Altair and start vl-convert's renderer in a background thread (about a second
    the first time), so that the run's report stage does not wait for it."""

    def work() -> None:
        import altair as alt

        _svg(alt.Chart(alt.Data(values=[{"a": 1}])).mark_bar().encode(x="a:Q"))
        _environment()

    thread = threading.Thread(target=work, name="cmi-report-warm-up", daemon=True)
    thread.start()
    return thread
