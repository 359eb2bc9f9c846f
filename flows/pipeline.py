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
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.ma  # noqa: F401 - see below
import pandera.backends.register_checks  # noqa: F401 - see below
import polars as pl

from connectors import epcis
from connectors import inbox as inbox_io
from connectors import outbox as outbox_io
from connectors.csv_reader import FileRejected, ParsedCsv, read_inbox_csv, scan_file
from connectors.store import Store, discard_torn_pool_rows, open_store, transaction
from flows.registry import csv_kinds
from schemas import contracts as contract_schemas
from schemas.base import header_problems, validate_rows
from transforms import contract_reports, reports, shipping
from transforms.context import Config, FileResult, RunContext
from transforms.rejects import REJECT_SCHEMA

log = logging.getLogger("cmi")

# The three imports above are modules the libraries import lazily on first use (the
# CSV reader's first UTF-8-with-BOM decode; polars' first Series made from a numpy
# array; pandera's first check): importing them here keeps that one-off cost out of
# the first file of a run.

STAGES: list[tuple[str, list[str]]] = [
    ("master_data", ["products", "cmos", "partnerships"]),
    ("serials", ["serial_pool", "serial_generate", "assignments", "serial_returns"]),
    ("contracts", ["contract_keys", "contracts", "contract_lines", "receipts", "orders"]),
    ("partner_requests", ["partner_requests"]),
    ("shipping", ["shipping"]),
    ("exports", ["exports"]),
]


@dataclass
class RunPaths:
    inbox: Path
    outbox: Path
    state: Path


@dataclass
class FileRecord:
    name: str
    kind: str | None
    sha256: str | None
    outcome: str  # applied | duplicate | quarantined | deferred
    rows_read: int = 0
    rows_applied: int = 0
    rows_rejected: int = 0
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "sha256": self.sha256,
            "outcome": self.outcome,
            "rows_read": self.rows_read,
            "rows_applied": self.rows_applied,
            "rows_rejected": self.rows_rejected,
            "reason": self.reason,
        }


@dataclass
class Run:
    """Everything one run accumulates; handed from stage to stage."""

    paths: RunPaths
    config: Config
    as_of: dt.datetime
    store: Store
    ctx: RunContext
    started_at: dt.datetime
    scan: inbox_io.InboxScan | None = None
    files: list[FileRecord] = field(default_factory=list)
    rejects: list[pl.DataFrame] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    shipping_rows: list[dict[str, Any]] = field(default_factory=list)
    shipping_exceptions: list[pl.DataFrame] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    report_dir: Path | None = None
    pool_sizes: dict[int, int] = field(default_factory=dict)  # pid -> serials at the start
    # export files / partner answers being written while the run goes on (file name, job)
    outputs: list[tuple[str, Future[list[str]]]] = field(default_factory=list)
    output_ids: set[int] = field(default_factory=set)  # recorded files handed to a job
    _writer: ThreadPoolExecutor | None = None

    def output_writer(self) -> ThreadPoolExecutor:
        """The thread that writes export files and answers while the run goes on."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cmi-outbox")
        return self._writer

    def stop_output_writer(self) -> None:
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None

    @property
    def run_id(self) -> str:
        return self.ctx.run_id


def _timed(run: Run, stage: str, started: float) -> None:
    run.durations[stage] = round(run.durations.get(stage, 0.0) + time.perf_counter() - started, 3)


# --------------------------------------------------------------------------- prepare


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


def prepare(paths: RunPaths, config: Config, as_of: dt.datetime) -> Run:
    """Lock and open the state, choose the run id, write any recorded output that is missing."""
    started = time.perf_counter()
    store = open_store(paths.state)
    try:
        run_id = _free_run_id(store, paths, as_of)
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
        _write_missing_outputs(run)
    except BaseException:
        store.close()
        raise
    _timed(run, "prepare", started)
    return run


# --------------------------------------------------------------------------- scan


def scan(run: Run) -> Run:
    """Take the inbox as it is; quarantine unrecognised files; note the ones that wait."""
    started = time.perf_counter()
    found = inbox_io.scan_inbox(run.paths.inbox, run.config.inbox.settle_seconds)
    run.scan = found
    for f in found.unrecognised:
        reason = (
            "unrecognised file kind: the name must start with a kind prefix such as products_, "
            "cmos_, serial_pool_, assignments_, exports_ … (see SPEC §3) and end in .csv or .xml"
        )
        inbox_io.quarantine_file(f.path, run.paths.inbox, run.run_id, reason)
        run.files.append(FileRecord(f.name, None, None, "quarantined", reason=reason))
    for path in found.waiting:
        if path.name.startswith("."):
            continue
        run.files.append(
            FileRecord(path.name, inbox_io.kind_of(path.name), None, "deferred",
                       reason="temporary file or modified too recently: left for the next run")
        )  # fmt: skip
    _timed(run, "scan", started)
    return run


# --------------------------------------------------------------------------- apply


def _add_rejects(run: Run, name: str, rejects: pl.DataFrame) -> None:
    if rejects.height:
        run.rejects.append(rejects.select(pl.lit(name).alias("file"), *REJECT_SCHEMA.keys()))


def _duplicate_of(run: Run, kind: str, sha: str) -> str | None:
    row = run.store.con.execute(
        "SELECT run_id FROM processed_files WHERE kind = ? AND sha256 = ?", [kind, sha]
    ).fetchone()
    return None if row is None else str(row[0])


def _duplicate(run: Run, f: inbox_io.InboxFile, sha: str, same_as: str) -> None:
    """A file whose content was applied before (§8): archived, not applied, warned of."""
    inbox_io.archive_file(f.path, run.paths.inbox, run.run_id)
    reason = f"{same_as}: not applied again"
    run.warnings.append(f"{f.name}: {reason}")
    run.files.append(FileRecord(f.name, f.kind, sha, "duplicate", reason=reason))


def _mark_processed(run: Run, kind: str, sha: str, name: str) -> None:
    run.store.con.execute(
        "INSERT INTO processed_files VALUES (?, ?, ?, ?, 'applied')", [sha, kind, name, run.run_id]
    )


def _quarantine(
    run: Run, f: inbox_io.InboxFile, sha: str | None, reason: str, rows: int = 0
) -> None:
    inbox_io.quarantine_file(f.path, run.paths.inbox, run.run_id, reason)
    run.files.append(
        FileRecord(
            f.name, f.kind, sha, "quarantined", rows_read=rows, rows_rejected=rows, reason=reason
        )
    )


def _write_missing_outputs(run: Run) -> None:
    """Before anything else: clear what a killed run left half-written, then write every
    recorded export file and answer that is missing (§8).  What cannot be written now
    (a blocked folder) is reported; the night goes on and a later run writes it."""
    outbox = run.paths.outbox
    outbox_io.remove_stale_temp_files(outbox)
    try:
        written = outbox_io.materialize_missing(run.store.con, outbox)
    except Exception as err:  # noqa: BLE001 - reported; the files stay recorded
        log.error("writing missing outputs failed: %s", err, exc_info=err)
        run.unexpected.append(
            f"recorded export or answer files could not be written ({type(err).__name__}: "
            f"{err}); they stay recorded and a later run writes them"
        )
        return
    if written:
        run.warnings.append(
            f"{len(written)} recorded export or partner answer file(s) were missing from the "
            "outbox and were written again: "
            + ", ".join(written[:5])
            + (" …" if len(written) > 5 else "")
        )


def _write_outputs_after_commit(run: Run, f: inbox_io.InboxFile) -> None:
    """Start writing the export files and answers the file recorded; the run goes on
    meanwhile (`await_outputs` waits for them).  The file is applied whatever happens to
    them: what cannot be written stays recorded and the next run writes it (§8)."""
    con = run.store.con
    ids = [
        int(r[0])
        for r in con.execute(
            "SELECT file_id FROM outbox_files WHERE run_id = ?", [run.run_id]
        ).fetchall()
        if int(r[0]) not in run.output_ids
    ]
    if not ids:
        return
    run.output_ids.update(ids)
    # a cursor of its own: the run's connection stays with the run's thread
    job = run.output_writer().submit(
        outbox_io.materialize_missing, con.cursor(), run.paths.outbox, ids
    )
    run.outputs.append((f.name, job))


def await_outputs(run: Run) -> None:
    """Wait for the files being written; a failure is reported, never raised (§8)."""
    for name, job in run.outputs:
        try:
            job.result()
        except Exception as err:  # noqa: BLE001 - the state is committed; report, do not quarantine
            log.error("writing the outputs of %s failed: %s", name, err, exc_info=err)
            run.unexpected.append(
                f"{name} was applied, but its export or answer files could not be written "
                f"({type(err).__name__}: {err}); they are recorded and the next run writes them"
            )
    run.outputs.clear()
    run.stop_output_writer()


def _unexpected(run: Run, f: inbox_io.InboxFile, sha: str | None, err: BaseException) -> None:
    log.error("unexpected error on %s:\n%s", f.name, traceback.format_exc())
    reason = (
        f"unexpected error while applying the file ({type(err).__name__}: {err}); the state was "
        "not changed; see the log, then put the file back in the inbox"
    )
    run.unexpected.append(f"{f.name}: {type(err).__name__}: {err}")
    if f.path.exists():
        _quarantine(run, f, sha, reason)


@dataclass
class _Prepared:
    file: inbox_io.InboxFile
    sha: str
    rows_read: int
    valid: pl.DataFrame
    rejects: pl.DataFrame


def _read_and_validate(run: Run, f: inbox_io.InboxFile, model: Any) -> _Prepared | None:
    """Hash, duplicate check, parse, header check and row validation of one CSV file."""
    # hash and parse side by side (hashlib lets go of the GIL): the parse of a file that
    # turns out to be a duplicate is thrown away, which is rare and cheap
    with ThreadPoolExecutor(max_workers=1) as pool:
        scanning = pool.submit(scan_file, f.path)
        try:
            parsed: ParsedCsv | FileRejected = read_inbox_csv(
                f.path, plain=lambda: scanning.result().plain
            )
        except FileRejected as err:
            parsed = err
        scanned = scanning.result()
    sha = scanned.sha256
    first = _duplicate_of(run, f.kind or "", sha)
    if first is not None:
        _duplicate(run, f, sha, f"same content as a file processed in run {first}")
        return None
    if isinstance(parsed, FileRejected):
        _quarantine(run, f, sha, str(parsed))
        return None
    problem = header_problems(model, parsed.header)
    if problem is not None:
        _quarantine(run, f, sha, problem, parsed.rows.height)
        return None
    if parsed.semicolon:
        run.warnings.append(
            f"{f.name}: the header is separated by semicolons, so the file was read as "
            "semicolon-separated; save it with commas"
        )
    valid, rejects = validate_rows(model, parsed.rows, gs1_text=scanned.gs1_text)
    if parsed.rejects.height:  # rows the reader could not split into the header's columns
        rejects = pl.concat([parsed.rejects, rejects]).sort("line", maintain_order=True)
    return _Prepared(f, sha, parsed.rows.height + parsed.rejects.height, valid, rejects)


def _finish_file(run: Run, p: _Prepared, result: FileResult) -> None:
    inbox_io.archive_file(p.file.path, run.paths.inbox, run.run_id)
    rejects = pl.concat([p.rejects, result.rejects.select(list(REJECT_SCHEMA))]).sort(
        "line", maintain_order=True
    )
    _add_rejects(run, p.file.name, rejects)
    run.warnings.extend(f"{p.file.name}: {w}" for w in result.warnings)
    rejected_rows = rejects.get_column("line").n_unique() if rejects.height else 0
    run.files.append(
        FileRecord(
            p.file.name,
            p.file.kind,
            p.sha,
            "applied",
            p.rows_read,
            result.rows_applied,
            rejected_rows,
        )
    )


def apply_csv_file(run: Run, f: inbox_io.InboxFile) -> None:
    """One CSV file: validate, apply its good rows in one transaction, archive it."""
    kind = csv_kinds()[f.kind or ""]
    sha: str | None = None
    try:
        p = _read_and_validate(run, f, kind.model)
        if p is None:
            return
        sha = p.sha
        ctx = run.ctx.for_file(f.name)
        with transaction(run.store.con) as con:
            result = kind.apply(con, p.valid, ctx)
            _mark_processed(run, f.kind or "", p.sha, f.name)
        _write_outputs_after_commit(run, f)
        _finish_file(run, p, result)
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the night
        _unexpected(run, f, sha, err)


def apply_order_files(run: Run, files: list[inbox_io.InboxFile]) -> None:
    """All order files of the run together, in one transaction (§7.5)."""
    kind = csv_kinds()["orders"]
    prepared: list[_Prepared] = []
    for f in files:
        try:
            p = _read_and_validate(run, f, kind.model)
        except Exception as err:  # noqa: BLE001
            _unexpected(run, f, None, err)
            continue
        if p is not None:
            prepared.append(p)
    # a file with the content of an earlier one of this run is a duplicate of it (§8)
    first_of: dict[str, str] = {}
    repeats: list[tuple[_Prepared, str]] = []
    for p in list(prepared):
        if p.sha in first_of:
            repeats.append((p, first_of[p.sha]))
            prepared.remove(p)
        else:
            first_of[p.sha] = p.file.name
    if not prepared:
        return
    pooled = pl.concat(
        [p.valid.with_columns(pl.lit(p.file.name).alias("_file")) for p in prepared],
        how="diagonal_relaxed",
    )
    try:
        with transaction(run.store.con) as con:
            result = kind.apply(con, pooled, run.ctx.for_file(prepared[0].file.name))
            for p in prepared:
                _mark_processed(run, "orders", p.sha, p.file.name)
    except Exception as err:  # noqa: BLE001
        for p in [*prepared, *(r for r, _ in repeats)]:
            _unexpected(run, p.file, p.sha, err)
        return
    for p, first in repeats:
        _duplicate(run, p.file, p.sha, f"same content as {first}, applied in this run")
    per_file: dict[str, pl.DataFrame] = {}
    rej = result.rejects
    if "file" in rej.columns:
        for p in prepared:
            per_file[p.file.name] = rej.filter(pl.col("file") == p.file.name).select(
                list(REJECT_SCHEMA)
            )
    else:
        per_file[prepared[0].file.name] = rej.select(list(REJECT_SCHEMA))
    applied_by_file: dict[str, int] = getattr(result, "rows_applied_by_file", {}) or {}
    for p in prepared:
        rejects = per_file.get(p.file.name, pl.DataFrame(schema=REJECT_SCHEMA))
        rows_rejected_here = rejects.get_column("line").n_unique() if rejects.height else 0
        applied = applied_by_file.get(p.file.name, p.valid.height - rows_rejected_here)
        _finish_file(run, p, FileResult(rejects, applied, []))
    run.warnings.extend(result.warnings)


def _count(row: dict[str, object], key: str) -> int:
    value = row.get(key, 0)
    return value if isinstance(value, int) else 0


def apply_shipping_file(run: Run, f: inbox_io.InboxFile) -> None:
    """One EPCIS document: stream it into staging, reconcile, update state in one transaction."""
    sha: str | None = None
    try:
        sha = inbox_io.sha256_of(f.path)
        first = _duplicate_of(run, "shipping", sha)
        if first is not None:
            _duplicate(run, f, sha, f"same content as a file processed in run {first}")
            return
        ctx = run.ctx.for_file(f.name)
        con = run.store.con
        try:
            with transaction(con):
                doc = epcis.stage_document(con, f.path)
                result = shipping.reconcile_document(con, doc, ctx)
                if result.quarantine_reason:
                    raise epcis.EpcisRejected(result.quarantine_reason)
                _mark_processed(run, "shipping", sha, f.name)
        except epcis.EpcisRejected as err:
            _quarantine(run, f, sha, str(getattr(err, "reason", None) or err))
            return
        inbox_io.archive_file(f.path, run.paths.inbox, run.run_id)
        run.warnings.extend(f"{f.name}: {w}" for w in result.warnings)
        run.shipping_rows.append(result.reconciliation)
        if result.exceptions.height:
            run.shipping_exceptions.append(result.exceptions)
        rec = result.reconciliation
        read = _count(rec, "commissioned") + _count(rec, "shipped")
        run.files.append(
            FileRecord(
                f.name,
                f.kind,
                sha,
                "applied",
                read,
                _count(rec, "ok"),
                read - _count(rec, "ok"),
            )
        )
    except Exception as err:  # noqa: BLE001
        _unexpected(run, f, sha, err)


def apply_stage(run: Run, stage: str) -> Run:
    """Apply every inbox file of the stage's kinds, in kind order then name order."""
    started = time.perf_counter()
    kinds = dict(STAGES)[stage]
    assert run.scan is not None
    files = [f for f in run.scan.files if f.kind in kinds]
    orders = [f for f in files if f.kind == "orders"]
    for f in files:
        if f.kind == "orders":
            if f is orders[0]:  # all order files of the run together (§7.5)
                apply_order_files(run, orders)
        elif f.kind == "shipping":
            apply_shipping_file(run, f)
        else:
            apply_csv_file(run, f)
    _timed(run, stage, started)
    return run


# --------------------------------------------------------------------------- reports


def _contract_and_shipping_reports(run: Run, folder: Path, invariants: dict[str, bool]) -> None:
    con = run.store.con
    for name, frame in (
        ("contracts.csv", contract_reports.contracts_report(con)),
        ("contract_balance.csv", contract_reports.contract_balance_report(con, run.as_of.date())),
        ("contract_log.csv", contract_reports.contract_log_report(con, run.run_id)),
        ("allocations.csv", contract_reports.allocations_report(con, run.run_id)),
    ):
        columns = contract_schemas.REPORT_COLUMNS.get(name, frame.columns)
        outbox_io.write_report(
            folder, name, frame, columns, free_text=("description", "detail", "event")
        )
    invariants.update(contract_reports.contract_invariants(con))
    rec_cols = [
        "file", "sender_cmo_id", "events_read", "events_skipped", "commissioned", "shipped", "ok",
        "unknown_serial", "already_shipped", "not_produceable", "not_assigned", "other_cmo",
        "unknown_container", "malformed_epc",
    ]  # fmt: skip
    exc_cols = ["file", "event_index", "event_kind", "product_code", "serial", "epc", "outcome"]
    rec = pl.DataFrame(
        run.shipping_rows,
        schema={c: (pl.String if c in ("file", "sender_cmo_id") else pl.Int64) for c in rec_cols},
    )
    exc = (
        pl.concat(run.shipping_exceptions, how="diagonal_relaxed")
        if run.shipping_exceptions
        else pl.DataFrame(
            schema={c: (pl.Int64 if c == "event_index" else pl.String) for c in exc_cols}
        )
    )
    outbox_io.write_report(folder, "shipping_reconciliation.csv", rec, rec_cols)
    outbox_io.write_report(folder, "shipping_exceptions.csv", exc, exc_cols)
    lots = shipping.lot_reconciliation(con)
    outbox_io.write_report(folder, "lot_reconciliation.csv", lots,
                           ["cmo_id", "product_code", "lot", "expiry", "commissioned", "shipped", "exceptions"])  # fmt: skip


def write_reports(run: Run) -> Run:
    """Write the run's reports into `outbox/reports/<run_id>/` and point LATEST at them."""
    started = time.perf_counter()
    con = run.store.con
    folder = run.paths.outbox / "reports" / run.run_id
    folder.mkdir(parents=True, exist_ok=True)
    run.report_dir = folder
    rejects = (
        pl.concat(run.rejects)
        if run.rejects
        else pl.DataFrame(schema={"file": pl.String, **REJECT_SCHEMA})
    )
    outbox_io.write_report(
        folder, "rejects.csv", rejects, reports.REJECTS_COLUMNS, free_text=("value", "message")
    )
    outbox_io.write_report(folder, "cmos.csv", reports.cmos_report(con), reports.CMOS_COLUMNS,
                           free_text=("cmo_name", "street1", "street2", "street3", "city", "state", "zip_code",
                                      "collaboration_channel", "contact_email", "tenant"))  # fmt: skip
    balance = reports.serial_balance_report(con)
    outbox_io.write_report(folder, "serial_balance.csv", balance, reports.SERIAL_BALANCE_COLUMNS,
                           free_text=("cmo_name", "product_name"))  # fmt: skip
    outbox_io.write_report(
        folder,
        "exported_files.csv",
        reports.exported_files_report(con),
        reports.EXPORTED_FILES_COLUMNS,
    )
    invariants = reports.serial_invariants(con, balance, run.pool_sizes)
    _contract_and_shipping_reports(run, folder, invariants)
    _timed(run, "reports", started)
    waiting = time.perf_counter()
    await_outputs(run)  # the summary tells whether they were written
    _timed(run, "outputs", waiting)  # the part of their writing the run waited for
    finished = dt.datetime.now()
    con.execute("UPDATE runs SET finished_at = ? WHERE run_id = ?", [finished, run.run_id])
    outbox_io.write_json(folder / "run_summary.json", summary(run, invariants, finished))
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
        "warnings": warnings,
        "invariants": invariants,
        "durations_s": dict(run.durations),
    }


def finish(run: Run) -> dict[str, Any]:
    """Close the store (releasing the lock) and return the run's outline for the command line."""
    run.store.close()
    return {
        "run_id": run.run_id,
        "report_dir": str(run.report_dir) if run.report_dir else None,
        "outbox": str(run.paths.outbox),
        "files": [f.as_json() for f in run.files],
        "rejects": int(sum(r.height for r in run.rejects)),
        "warnings": len(run.warnings),
        "unexpected": list(run.unexpected),
    }


Step = Callable[..., Any]


def run_pipeline(
    call: Callable[..., Any], paths: RunPaths, config: Config, as_of: dt.datetime
) -> dict[str, Any]:
    """The order of the stages.  `call(fn, *args)` runs a stage (directly, or as a Prefect task)."""
    run = call(prepare, paths, config, as_of)
    try:
        run = call(scan, run)
        for stage, _ in STAGES:
            run = call(apply_stage, run, stage)
        run = call(write_reports, run)
    except BaseException:
        await_outputs(run)
        run.store.close()
        raise
    return call(finish, run)


def run_local(paths: RunPaths, config: Config, as_of: dt.datetime) -> dict[str, Any]:
    """The same stages as the Prefect flow, run in-process without an orchestrator."""
    return run_pipeline(lambda fn, *args: fn(*args), paths, config, as_of)
