"""`report.html` and `report.xlsx` (SPEC §10.1): made from the run folder's CSV reports
after they are written, unless `[reports]` turns them off.

Both read the CSVs back (`connectors.report_files`), so their numbers are the CSVs';
the page's sections are prepared by `transforms.report_page` and written by
`connectors.report_html`, the workbook by `connectors.report_xlsx`.  A failure of the
surroundings (a full disk) stops the run like any other (§8); a failure of their own
is a warning: the CSVs are the reports of record.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from connectors import outbox as outbox_io
from connectors import report_files, report_html, report_xlsx
from connectors.faults import is_environmental
from flows.run_state import Run, timed
from transforms import report_page

log = logging.getLogger("cmi")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cmi")
    except PackageNotFoundError:
        return "unknown"


def write_people_reports(run: Run, folder: Path, outline: dict[str, Any]) -> None:
    """Write `report.html` and `report.xlsx` into the run folder from its CSVs and the run's
    outline (`flows.reporting.summary`): only what does not change with the wall clock
    is shown, so the same run gives the same bytes."""
    wanted = run.config.reports
    if not (wanted.html or wanted.xlsx):
        return
    started = time.perf_counter()
    try:
        reports = report_files.read_run_reports(folder)
        if wanted.html:
            page = report_page.build_page(reports, outline, run.as_of)
            html = report_html.render_page(
                page, _version(), run.chart_renderer, workbook=wanted.xlsx
            )
            outbox_io.write_atomic(folder / "report.html", html)
        if wanted.xlsx:
            outbox_io.write_atomic(
                folder / "report.xlsx", report_xlsx.report_workbook(reports, run.as_of)
            )
    except Exception as err:
        if is_environmental(err):
            raise
        log.exception("report.html / report.xlsx of run %s", run.run_id)
        run.warnings.append(
            f"report.html / report.xlsx could not be written ({type(err).__name__}: {err}); "
            "the CSV reports are complete; see the log"
        )
    finally:
        run.close_chart_renderer()
    timed(run, "report_pages", started)
