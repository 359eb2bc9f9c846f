"""The run's reports: the CSVs of SPEC §10 in `outbox/reports/<run_id>/`, the run summary,
and LATEST."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import polars as pl

from connectors import outbox as outbox_io
from connectors.store import transaction
from flows.notifications import notify_run
from flows.outputs import await_outputs
from flows.people_reports import write_people_reports
from flows.run_state import Run, timed
from schemas import contracts as contract_schemas
from schemas import shipping as shipping_schemas
from transforms import contract_reports, reports, run_rows, shipping
from transforms import delivery as deliveries
from transforms.rejects import REJECT_SCHEMA


def _contract_and_shipping_reports(
    run: Run, folder: Path, invariants: dict[str, bool], reported: list[str]
) -> None:
    con = run.store.con
    for name, frame in (
        ("contracts.csv", contract_reports.contracts_report(con)),
        ("contract_balance.csv", contract_reports.contract_balance_report(con, run.as_of.date())),
        ("contract_log.csv", contract_reports.contract_log_report(con, reported)),
        ("allocations.csv", contract_reports.allocations_report(con, reported)),
    ):
        columns = contract_schemas.REPORT_COLUMNS.get(name, frame.columns)
        outbox_io.write_report(folder, name, frame, columns)
    invariants.update(contract_reports.contract_invariants(con))
    rec_cols = shipping_schemas.SHIPPING_RECONCILIATION_COLUMNS
    exc_cols = shipping_schemas.SHIPPING_EXCEPTIONS_COLUMNS
    # the rows of the files applied by this run and by the runs it reports (§8)
    rec = run_rows.recorded_rows(
        con,
        reported,
        "shipping_reconciliation.csv",
        {c: (pl.String() if c in ("file", "sender_cmo_id") else pl.Int64()) for c in rec_cols},
    )
    exc = run_rows.recorded_rows(
        con,
        reported,
        "shipping_exceptions.csv",
        {c: (pl.Int64() if c == "event_index" else pl.String()) for c in exc_cols},
    )
    outbox_io.write_report(folder, "shipping_reconciliation.csv", rec, rec_cols)
    outbox_io.write_report(folder, "shipping_exceptions.csv", exc, exc_cols)
    lots = shipping.lot_reconciliation(con)
    outbox_io.write_report(
        folder, "lot_reconciliation.csv", lots, shipping_schemas.LOT_RECONCILIATION_COLUMNS
    )


def settle_earlier_reports(run: Run) -> None:
    """At the start of a run: a run stopped after claiming rows for its report folder
    keeps them when its folder is in place, and gives them up otherwise (§8)."""
    con = run.store.con
    pending = run_rows.pending_claims(con)
    if pending:
        written = outbox_io.report_folders_written(run.paths.outbox, pending)
        with transaction(con):
            run_rows.settle_claims(con, written)


def write_reports(run: Run) -> Run:
    """Write the run's reports into `outbox/reports/<run_id>/` and point LATEST at them.

    The folder is written under a temporary name and put in place whole.  Its run
    reports hold the rows of this run's files and of every earlier run whose rows no
    report folder holds yet (killed, or stopped before its reports): each row of
    every applied file is in exactly one report folder (§8 no report row lost)."""
    started = time.perf_counter()
    con = run.store.con
    with transaction(con):
        reported = run_rows.claim_unreported(con, run.run_id)
    earlier = [r for r in reported if r != run.run_id]
    if earlier:
        run.warnings.append(
            f"the rows of the files applied by run(s) {', '.join(earlier)}, which stopped "
            "before writing their reports, are in this run's reports (the file column names "
            "the file they came from)"
        )
    final = run.paths.outbox / "reports" / run.run_id
    folder = outbox_io.report_staging(run.paths.outbox, run.run_id)
    rejects = run_rows.recorded_rows(
        con, reported, "rejects.csv", {"file": pl.String(), **REJECT_SCHEMA}
    )
    outbox_io.write_report(folder, "rejects.csv", rejects, reports.REJECTS_COLUMNS)
    outbox_io.write_report(folder, "cmos.csv", reports.cmos_report(con), reports.CMOS_COLUMNS)
    balance = reports.serial_balance_report(con)
    outbox_io.write_report(folder, "serial_balance.csv", balance, reports.SERIAL_BALANCE_COLUMNS)
    outbox_io.write_report(
        folder,
        "exported_files.csv",
        reports.exported_files_report(con),
        reports.EXPORTED_FILES_COLUMNS,
    )
    outbox_io.write_report(folder, "deliveries.csv", deliveries.deliveries_frame(run.deliveries),
                           deliveries.DELIVERIES_COLUMNS)  # fmt: skip
    invariants = reports.serial_invariants(con, balance, run.pool_sizes)
    _contract_and_shipping_reports(run, folder, invariants, reported)
    timed(run, "reports", started)
    waiting = time.perf_counter()
    await_outputs(run)  # the summary tells whether they were written
    timed(run, "outputs", waiting)  # the part of their writing the run waited for
    finished = dt.datetime.now()
    con.execute("UPDATE runs SET finished_at = ? WHERE run_id = ?", [finished, run.run_id])
    doc = summary(run, invariants, finished)
    notify_run(run, doc, final)  # before the reports: a failed send is one of their warnings
    write_people_reports(run, folder, doc)  # report.html, .xlsx
    doc["durations_s"] = dict(run.durations)  # with the pages' own (they show no timing)
    outbox_io.write_json(folder / "run_summary.json", doc)
    run.report_dir = outbox_io.publish_report_folder(folder, final)
    with transaction(con):
        run_rows.confirm_reported(con, run.run_id)
    outbox_io.write_latest(run.paths.outbox, run.run_id)
    return run


def summary(run: Run, invariants: dict[str, bool], finished: dt.datetime) -> dict[str, Any]:
    files = [f.as_json() for f in run.files]
    counted = [f for f in run.files if f.outcome != "deferred"]
    warnings = list(run.warnings)
    warnings.extend(f"unexpected error: {u}" for u in run.unexpected)
    return {
        "run_id": run.run_id,
        "as_of": run.as_of.isoformat(timespec="seconds"),
        "started_at": run.started_at.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "files": files,
        "totals": {
            "files_seen": len(run.files),
            "files_applied": sum(f.outcome == "applied" for f in counted),
            "files_duplicate": sum(f.outcome == "duplicate" for f in counted),
            "files_quarantined": sum(f.outcome == "quarantined" for f in counted),
            "rows_read": sum(f.rows_read for f in counted),
            "rows_applied": sum(f.rows_applied for f in counted),
            "rows_rejected": sum(f.rows_rejected for f in counted),
        },
        "deliveries": deliveries.deliveries_summary(run.deliveries, run.deliveries_pending),
        "orchestrator": run.orchestrator,
        "warnings": warnings,
        "invariants": invariants,
        "durations_s": dict(run.durations),
    }
