"""The charts of `report.html` (SPEC §10.1): Altair (Vega-Lite) charts of the page's
aggregates, rendered to inline SVG by vl-convert — no script, font or request in the
page, and the same data gives the same bytes.

Drawing happens in a helper process (`ChartRenderer`), started when the night starts:
vl-convert's first chart boots a JavaScript engine (about half a second on an idle
machine, seconds on a busy one) and holds Python's GIL all that time (measured: a
thread doing it stopped the night's thread for the whole boot), and importing Altair
takes a few hundred milliseconds more; in the helper both happen on the other core
while the night runs (at the normal priority: a niced helper starved on a busy machine
and kept the report stage waiting), and the report stage only sends the aggregates
and reads the SVG back.  When the helper cannot answer (it failed, or is not there) the
same functions draw in-process.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

_VL_VERSION = (
    "6.4"  # the Vega-Lite of Altair's schema (altair.SCHEMA_VERSION), bundled in vl-convert
)
_WIDTH = 520
_STEP = 22
# the labels are laid out with the first of these fonts the machine has: DejaVu Sans (the
# sans-serif of Debian and most Linux desktops) is the widest, so a browser that draws
# them with it, Helvetica or Arial never pushes a label past the chart's edge
_FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
_HOLDING_COLORS = ["#4c78a8", "#72b7b2", "#b279a2"]
_OUTCOME_COLORS = ["#2e7d32", "#c62828", "#ef6c00", "#8e24aa", "#6d4c41", "#1565c0"]
LINKED_COLOR, OTHER_COLOR = "#2e7d32", "#ef6c00"

Rows = list[dict[str, Any]]


def _svg(chart: Any) -> str:
    import vl_convert

    svg: str = vl_convert.vegalite_to_svg(chart.to_dict(), vl_version=_VL_VERSION)
    return svg


def _stacked(rows: Rows, y: str, color: str, domain: list[str], colors: list[str],
             x_title: str) -> Any:  # fmt: skip
    """Horizontal bars, one per `y` in the rows' order, stacked by `color` in `domain`'s
    order, of the field `count`."""
    import altair as alt

    order = list(dict.fromkeys(r[y] for r in rows))
    ranked = [{**r, "_order": domain.index(r[color])} for r in rows]
    return (
        alt.Chart(alt.Data(values=ranked))
        .mark_bar()
        .encode(
            y=alt.Y(f"{y}:N", sort=order, title=None, axis=alt.Axis(labelLimit=0)),
            x=alt.X("sum(count):Q", title=x_title, axis=alt.Axis(format="d", tickMinStep=1)),
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
            ),  # fmt: skip
            order=alt.Order("_order:Q"),
        )
        .properties(width=_WIDTH, height=alt.Step(_STEP))
    )


def _reasons(rows: Rows, linked: str) -> Any:
    import altair as alt

    return (
        alt.Chart(alt.Data(values=rows))
        .mark_bar()
        .encode(
            y=alt.Y(
                "reason:N",
                sort=[r["reason"] for r in rows],
                title=None,
                axis=alt.Axis(labelLimit=0),
            ),  # fmt: skip
            x=alt.X("count:Q", title="order lines", axis=alt.Axis(format="d", tickMinStep=1)),
            color=alt.condition(
                alt.datum.reason == linked, alt.value(LINKED_COLOR), alt.value(OTHER_COLOR)
            ),
        )
        .properties(width=_WIDTH, height=alt.Step(_STEP))
    )


def draw(request: dict[str, Any]) -> dict[str, str | None]:
    """The SVG of each chart asked for: `serials` (rows cmo_id, status, count; `domain`),
    `allocations` (rows reason, count; `linked`), `shipping` (rows file, outcome, count;
    `domain`).  A chart without rows is None."""
    out: dict[str, str | None] = {}
    for name, spec in request.items():
        rows = spec["rows"]
        if not rows:
            out[name] = None
            continue
        if name == "serials":
            chart = _stacked(rows, "cmo_id", "status", spec["domain"], _HOLDING_COLORS, "serials")
        elif name == "shipping":
            chart = _stacked(rows, "file", "outcome", spec["domain"], _OUTCOME_COLORS, "SGTINs")
        elif name == "allocations":
            chart = _reasons(rows, spec["linked"])
        else:
            raise ValueError(f"no chart named {name!r}")
        out[name] = _svg(chart.configure(font=_FONT).configure_view(stroke=None))
    return out


def _warm_up() -> None:
    draw({"allocations": {"rows": [{"reason": "x", "count": 1}], "linked": "x"}})


def serve() -> None:
    """The helper process: warm up, then answer one JSON request per line on stdin with
    one JSON line on stdout, until stdin closes."""
    _warm_up()
    sys.stdout.write(READY)
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            answer: dict[str, Any] = {"svgs": draw(json.loads(line))}
        except Exception as err:  # noqa: BLE001 - reported to the parent, which draws itself
            answer = {"error": f"{type(err).__name__}: {err}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


READY = "ready\n"
_READY_WAIT = 60.0  # seconds the report stage waits for a helper still warming up


class ChartRenderer:
    """The helper process (see the module docstring).  `draw` uses it once it is warm,
    waiting for it if need be; a helper that failed or does not warm up in time is
    stopped and the charts are drawn in-process."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
        self.process: subprocess.Popen[str] | None = subprocess.Popen(
            [sys.executable, "-c", "from connectors.report_charts import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env, close_fds=True,
        )  # fmt: skip
        self.warm = False

    def ready(self, wait: float = 0.0) -> bool:
        """Whether the helper has warmed up, waiting for it up to `wait` seconds (once the
        night waits for it, it has the machine to itself)."""
        process = self.process
        if self.warm:
            return True
        if process is None or process.stdout is None or process.poll() is not None:
            return False
        if not select.select([process.stdout], [], [], wait)[0]:
            return False
        self.warm = process.stdout.readline() == READY
        return self.warm

    def draw(self, request: dict[str, Any]) -> dict[str, str | None]:
        if not any(spec["rows"] for spec in request.values()):
            return draw(request)  # no chart to draw (an empty night): no wait for the helper
        if not self.ready(_READY_WAIT):
            self.close()
            return draw(request)
        process = self.process
        if process is not None and process.stdin is not None and process.stdout is not None:
            try:
                process.stdin.write(json.dumps(request) + "\n")
                process.stdin.flush()
                answer = json.loads(process.stdout.readline() or "{}")
                if "svgs" in answer:
                    return dict(answer["svgs"])
            except (OSError, ValueError):
                pass
        return draw(request)

    def close(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        if process.poll() is None:  # still warming up, or done: it need not finish
            process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
