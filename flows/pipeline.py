"""The stages of one nightly run, as plain functions over a `Run` (SPEC §1, §3, §8–§10).

The Prefect flow in `flows/nightly.py` calls these stages as tasks, in order;
`run_local` calls the very same functions without an orchestrator.  No business
rule lives here: stages read files (connectors), validate them (schemas), apply
rules (transforms) inside one transaction per file, and hand results to writers.
"""

from __future__ import annotations

import datetime as dt
import encodings.utf_8_sig  # noqa: F401 - see below
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy.ma  # noqa: F401 - see below
import pandera.backends.register_checks  # noqa: F401 - see below

from connectors import inbox as inbox_io
from connectors.config import ConfigError
from connectors.faults import is_environmental, stopped
from connectors.report_charts import ChartRenderer
from connectors.store import StateLocked, Store, discard_torn_pool_rows, open_store
from flows.apply_files import apply_csv_file, apply_order_files, apply_shipping_file
from flows.delivery_stage import deliver
from flows.notifications import notify_failure
from flows.outputs import await_outputs, raise_failed_outputs, write_unwritten_outputs
from flows.reporting import settle_earlier_reports, summary, write_reports
from flows.run_log import log_end, log_files
from flows.run_state import FileRecord, Run, RunPaths, timed
from transforms import delivery as delivery_rules
from transforms import reports
from transforms.context import Config, RunContext

# The imports marked "see below" are modules the libraries import lazily on first use
# (the CSV reader's first UTF-8-with-BOM decode; polars' first Series made from a numpy
# array; pandera's first check): importing them here keeps that one-off cost out of the
# first file of a run.

__all__ = ["STAGES", "FileRecord", "Run", "RunPaths", "apply_stage", "deliver", "finish", "prepare",
           "run_local", "run_pipeline", "scan", "summary", "write_reports"]  # fmt: skip

log = logging.getLogger("cmi")


STAGES: list[tuple[str, list[str]]] = [
    ("master_data", ["products", "cmos", "partnerships"]),
    ("serials", ["serial_pool", "serial_generate", "assignments", "serial_returns"]),
    ("contracts", ["contract_keys", "contracts", "contract_lines", "receipts", "orders"]),
    ("partner_requests", ["partner_requests"]),
    ("shipping", ["shipping"]),
    ("exports", ["exports"]),
]


def _free_run_id(store: Store, paths: RunPaths, as_of: dt.datetime) -> str:
    base = as_of.strftime("%Y%m%dT%H%M%S")
    taken = {r[0] for r in store.con.execute("SELECT run_id FROM runs").fetchall()}
    candidate, n = base, 2
    while (
        candidate in taken
        or (paths.outbox / "reports" / candidate).exists()
        or (paths.inbox / inbox_io.ARCHIVE / candidate).exists()
        or (paths.inbox / inbox_io.QUARANTINE / candidate).exists()
    ):
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def _holder_note(paths: RunPaths, run_id: str) -> str:
    """For whoever finds the store locked by this run (§1: `status`, `validate` and
    `redeliver` name the latest completed run's report folder)."""
    reports_dir = paths.outbox / "reports"
    try:
        latest = (reports_dir / "LATEST").read_text(encoding="utf-8").strip()
    except OSError:
        latest = ""
    where = (
        f"the latest completed run's reports are in {(reports_dir / latest).resolve()}"
        if latest
        else "no run has completed yet"
    )
    return f"run {run_id} (process {os.getpid()}) holds it; {where}"


def prepare(paths: RunPaths, config: Config, as_of: dt.datetime) -> Run:
    """Lock and open the state, choose the run id, write the recorded outputs not yet written."""
    started = time.perf_counter()
    store = open_store(paths.state)
    run: Run | None = None
    try:
        run_id = _free_run_id(store, paths, as_of)
        store.note_holder(_holder_note(paths, run_id))
        store.con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, NULL)", [run_id, as_of, dt.datetime.now()]
        )
        run = Run(paths, config, as_of, store, RunContext(run_id, as_of, config), dt.datetime.now())
        torn = discard_torn_pool_rows(store.con)
        if torn:
            run.warnings.append(
                f"an earlier run was stopped while it committed a serial pool file: {torn} "
                "serial(s) it had left behind were removed; that file is applied again when "
                "it is in the inbox"
            )
        run.pool_sizes = reports.pool_sizes(store.con)
        if config.reports.html:  # the charts' helper process warms up while the night runs
            run.chart_renderer = ChartRenderer()
        write_unwritten_outputs(run)
        settle_earlier_reports(run)
    except BaseException:
        if run is not None:
            run.close_chart_renderer()
        store.close()
        raise
    timed(run, "prepare", started)
    return run


# --------------------------------------------------------------------------- scan


def _sha256_or_none(path: Path) -> str | None:
    """The file's SHA-256, or None when its bytes cannot be read (§10)."""
    try:
        return inbox_io.sha256_of(path)
    except OSError:
        return None


def scan(run: Run) -> Run:
    """Take the inbox as it is; quarantine unrecognised files; note the ones that wait."""
    started = time.perf_counter()
    found = inbox_io.scan_inbox(run.paths.inbox, run.config.inbox.settle_seconds)
    run.scan = found
    for f in found.unrecognised:
        reason = inbox_io.UNRECOGNISED_REASON
        sha = _sha256_or_none(f.path)  # taken before the move: what was quarantined (§10)
        run.quarantine(f.path, reason)
        run.files.append(FileRecord(f.name, None, sha, "quarantined", reason=reason))
    for path in found.badly_named:  # §8: under a safe name, the bytes shown escaped
        shown, safe = inbox_io.shown_name(path.name), inbox_io.safe_name(path.name)
        reason = (
            f"the file name is not valid UTF-8 (its bytes, escaped: {shown}): the file was "
            f"quarantined as {safe}; rename it with UTF-8 characters only (letters, digits, "
            ". _ -) and put it back in the inbox"
        )
        sha = _sha256_or_none(path)
        run.quarantine(path, reason)
        run.files.append(
            FileRecord(shown, inbox_io.kind_of(safe), sha, "quarantined", reason=reason)
        )
    for path in found.waiting:
        if path.name.startswith("."):
            continue
        name = inbox_io.shown_name(path.name)
        run.files.append(
            FileRecord(name, inbox_io.kind_of(name), _sha256_or_none(path), "deferred",
                       reason="temporary file or modified too recently: left for the next run")
        )  # fmt: skip
    timed(run, "scan", started)
    return run


# --------------------------------------------------------------------------- apply


def apply_stage(run: Run, stage: str) -> Run:
    """Apply every inbox file of the stage's kinds, in kind order then name order."""
    started = time.perf_counter()
    kinds = dict(STAGES)[stage]
    assert run.scan is not None
    files = [f for f in run.scan.files if f.kind in kinds]
    orders = [f for f in files if f.kind == "orders"]
    for f in files:
        raise_failed_outputs(run)  # an outbox that cannot be written stops the run (§8)
        if f.kind == "orders":
            if f is orders[0]:  # all order files of the run together (§7.5)
                apply_order_files(run, orders)
        elif f.kind == "shipping":
            apply_shipping_file(run, f)
        else:
            apply_csv_file(run, f)
    timed(run, stage, started)
    return run


# --------------------------------------------------------------------------- reports


def finish(run: Run) -> dict[str, Any]:
    """Close the store (releasing the lock) and return the run's outline for the command line."""
    run.store.close()
    return {
        "run_id": run.run_id,
        "report_dir": str(run.report_dir) if run.report_dir else None,
        "outbox": str(run.paths.outbox),
        "files": [f.as_json() for f in run.files],
        "rejects": int(sum(r.height for r in run.rejects)),
        "warnings": list(run.warnings),
        "unexpected": list(run.unexpected),
        "deliveries": delivery_rules.deliveries_summary(run.deliveries, run.deliveries_pending),
    }


Step = Callable[..., Any]


def run_pipeline(
    call: Callable[..., Any],
    paths: RunPaths,
    config: Config,
    as_of: dt.datetime,
    *,
    orchestrator: str = "in-process",
    tenant: str | None = None,
    notes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The order of the stages.  `call(fn, *args)` runs a stage (directly, or as a Prefect
    task); `orchestrator` and `notes` (warnings known before the run) go to the summary.

    A failure of the surroundings (a full disk, a read-only folder, an I/O error) stops
    the run as `RunStopped`, whose one line says what to fix (§8 stop, don't cascade):
    the files not yet applied stay in the inbox for the next run."""
    try:
        run = call(prepare, paths, config, as_of)
    except Exception as err:
        if is_environmental(err):
            failure = stopped(err, paths.places(), "no file was touched")
            _notify_failure(config, tenant, None, None, failure)
            raise failure from err
        _notify_failure(config, tenant, None, None, err)
        raise
    run.orchestrator, run.tenant = orchestrator, tenant
    run.warnings[:0] = notes
    logged = 0
    try:
        run = call(scan, run)
        logged = log_files(run, logged)
        for stage, _ in STAGES:
            run = call(apply_stage, run, stage)
            logged = log_files(run, logged)
        run = call(deliver, run)  # §8.1: after the exports, before the reports
        run = call(write_reports, run)
    except BaseException as err:
        await_outputs(run, stop=False)
        run.close_chart_renderer()
        run.store.close()
        if isinstance(err, Exception) and is_environmental(err):
            failure = stopped(err, run.paths.places(), "the files not yet applied are in the inbox")
            _notify_failure(config, tenant, run.run_id, run.report_dir, failure)
            raise failure from err
        _notify_failure(config, tenant, run.run_id, run.report_dir, err)
        raise
    log_end(run)
    return call(finish, run)


def _notify_failure(
    config: Config, tenant: str | None, run_id: str | None, report_dir: Any, err: BaseException
) -> None:
    """A run that stops with exit 1 (not a lock refusal, a configuration error or Ctrl-C)."""
    if isinstance(err, Exception) and not isinstance(err, StateLocked | ConfigError):
        notify_failure(config, tenant=tenant, run_id=run_id, report_dir=report_dir, error=err)


def run_local(
    paths: RunPaths, config: Config, as_of: dt.datetime, *, notes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The same stages as the Prefect flow, run in-process without an orchestrator."""
    return run_pipeline(lambda fn, *args: fn(*args), paths, config, as_of, notes=notes)
