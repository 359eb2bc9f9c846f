"""Applying inbox files: read, validate, apply in one transaction per file, archive or
quarantine (SPEC §3, §8, §9).  The rules are in `transforms/`; this module only orders them."""

from __future__ import annotations

import logging
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import polars as pl

from connectors import epcis
from connectors import inbox as inbox_io
from connectors.csv_reader import FileRejected, ParsedCsv, read_inbox_csv, scan_file
from connectors.faults import is_environmental, stopped
from connectors.store import transaction
from flows.outputs import resend_answers_missing_from_outbox, write_outputs_after_commit
from flows.registry import csv_kinds
from flows.run_state import FileRecord, Run
from schemas.base import header_problems, validate_rows
from transforms import run_rows, shipping
from transforms.context import FileResult
from transforms.rejects import REJECT_SCHEMA

log = logging.getLogger("cmi")


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
    run.archive(f.path)
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
    run.quarantine(f.path, reason)
    run.files.append(
        FileRecord(
            f.name, f.kind, sha, "quarantined", rows_read=rows, rows_rejected=rows, reason=reason
        )
    )


def _unexpected(run: Run, f: inbox_io.InboxFile, sha: str | None, err: BaseException) -> None:
    """A failure while applying `f`.  A failure of the surroundings (disk, permissions,
    memory) stops the run, `f` and every file after it left in the inbox untouched
    (§8 stop, don't cascade); anything else quarantines `f` as an unexpected error."""
    log.error("unexpected error on %s:\n%s", f.name, traceback.format_exc())
    if is_environmental(err):
        raise stopped(
            err, run.paths.places(), f"{f.name} and every file after it were left in the inbox"
        ) from err
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


def _file_rejects(p: _Prepared, rules: pl.DataFrame) -> pl.DataFrame:
    """The file's rejected rows: the reader's and the contract's, then the rules', by line."""
    return pl.concat([p.rejects, rules.select(list(REJECT_SCHEMA))]).sort(
        "line", maintain_order=True
    )


def _record_rejects(run: Run, name: str, rejects: pl.DataFrame) -> None:
    """In the file's transaction: its rows of `rejects.csv` (§8 no report row lost)."""
    rows = rejects.select(pl.lit(name).alias("file"), *REJECT_SCHEMA.keys())
    run_rows.record_rows(run.store.con, run.run_id, "rejects.csv", rows)


def _finish_file(run: Run, p: _Prepared, result: FileResult, rejects: pl.DataFrame) -> None:
    run.archive(p.file.path)
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
            rejects = _file_rejects(p, result.rejects)
            _record_rejects(run, f.name, rejects)
            resent = resend_answers_missing_from_outbox(run, con, result.asked_again)
            _mark_processed(run, f.kind or "", p.sha, f.name)
        result.warnings.extend(
            f"the answer {rel} was no longer in the outbox: written and delivered again"
            for rel in resent
        )
        write_outputs_after_commit(run, f)
        _finish_file(run, p, result, rejects)
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
    per_file: dict[str, pl.DataFrame] = {}  # each file's rejects of the rules
    combined: dict[str, pl.DataFrame] = {}  # and with the reader's and the contract's
    try:
        with transaction(run.store.con) as con:
            result = kind.apply(con, pooled, run.ctx.for_file(prepared[0].file.name))
            rej = result.rejects
            for p in prepared:
                mine = (
                    rej.filter(pl.col("file") == p.file.name)
                    if "file" in rej.columns
                    else (rej if p is prepared[0] else rej.clear())
                )
                per_file[p.file.name] = mine.select(list(REJECT_SCHEMA))
                combined[p.file.name] = _file_rejects(p, per_file[p.file.name])
                _record_rejects(run, p.file.name, combined[p.file.name])
                _mark_processed(run, "orders", p.sha, p.file.name)
    except Exception as err:  # noqa: BLE001
        for p in [*prepared, *(r for r, _ in repeats)]:
            _unexpected(run, p.file, p.sha, err)
        return
    for p, first in repeats:
        _duplicate(run, p.file, p.sha, f"same content as {first}, applied in this run")
    applied_by_file: dict[str, int] = getattr(result, "rows_applied_by_file", {}) or {}
    for p in prepared:
        rejects = per_file[p.file.name]
        rows_rejected_here = rejects.get_column("line").n_unique() if rejects.height else 0
        applied = applied_by_file.get(p.file.name, p.valid.height - rows_rejected_here)
        _finish_file(run, p, FileResult(rejects, applied, []), combined[p.file.name])
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
                # its rows of the run reports, with its commit (§8 no report row lost)
                run_rows.record_rows(con, run.run_id, "shipping_reconciliation.csv",
                                     pl.DataFrame([result.reconciliation]))  # fmt: skip
                run_rows.record_rows(con, run.run_id, "shipping_exceptions.csv", result.exceptions)
        except epcis.EpcisRejected as err:
            _quarantine(run, f, sha, str(getattr(err, "reason", None) or err))
            return
        run.archive(f.path)
        run.warnings.extend(f"{f.name}: {w}" for w in result.warnings)
        run.shipping_rows.append(result.reconciliation)
        if result.exceptions.height:
            run.shipping_exceptions.append(result.exceptions)
        rec = result.reconciliation
        read = _count(rec, "commissioned") + _count(rec, "shipped") + _count(rec, "decommissioned")
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
