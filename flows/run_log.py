"""The run's own log lines (SPEC §11): one per file and its outcome, the warnings, the summary.

They go to the `cmi` logger, whose handlers write `cmi.log` beside the state store and,
when the run is a Prefect flow run, the flow run's log too (`flows/nightly.py`).
"""

from __future__ import annotations

import logging

from flows.run_state import FileRecord, Run

log = logging.getLogger("cmi")


def file_line(f: FileRecord) -> str:
    """`name: outcome` with the rows of an applied file or the reason of the others."""
    if f.outcome == "applied":
        return f"{f.name}: applied, {f.rows_applied} row(s) applied, {f.rows_rejected} rejected"
    return f"{f.name}: {f.outcome}" + (f" — {f.reason}" if f.reason else "")


def log_files(run: Run, since: int) -> int:
    """Log the files recorded since index `since`; return the new index."""
    for f in run.files[since:]:
        level = logging.WARNING if f.outcome == "quarantined" else logging.INFO
        log.log(level, "run %s: %s", run.run_id, file_line(f))
    return len(run.files)


def log_end(run: Run) -> None:
    """The warnings of the run, then one summary line."""
    for w in run.warnings:
        log.warning("run %s: warning: %s", run.run_id, w)
    for u in run.unexpected:
        log.error("run %s: unexpected error: %s", run.run_id, u)
    counted = [f for f in run.files if f.outcome != "deferred"]
    by: dict[str, int] = {}
    for f in run.files:
        by[f.outcome] = by.get(f.outcome, 0) + 1
    log.info(
        "run %s (%s%s): %d file(s)%s; rows %d read, %d applied, %d rejected; %d warning(s); "
        "reports %s",
        run.run_id,
        run.orchestrator,
        f", tenant {run.tenant}" if run.tenant else "",
        len(run.files),
        "".join(f", {n} {k}" for k, n in sorted(by.items())),
        sum(f.rows_read for f in counted),
        sum(f.rows_applied for f in counted),
        sum(f.rows_rejected for f in counted),
        len(run.warnings),
        run.report_dir,
    )
