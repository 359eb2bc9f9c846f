"""The delivery stage (SPEC §8.1) and `cmi redeliver`'s work (§1): which files go where
comes from the state (`transforms/delivery.py`), the uploads from `connectors/delivery.py`;
this module only joins them and marks each outcome as soon as it is known."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from connectors import delivery as delivery_io
from connectors import outbox as outbox_io
from connectors.store import transaction
from flows.outputs import await_outputs
from flows.run_state import Run, timed
from transforms import delivery as marks
from transforms.context import Config, DeliveryTarget

log = logging.getLogger("cmi")

MARK_EVERY_S = 0.2  # outcomes are marked in the state together, at most this often


def _jobs(
    con: duckdb.DuckDBPyConnection, outbox: Path, pending: Sequence[marks.Pending]
) -> list[delivery_io.Job]:
    """A job per file: read from the outbox, or made again from the state when it has left."""
    gone = [p.file_id for p in pending if not (outbox / p.rel_path).is_file()]
    made = outbox_io.recorded_bytes(con, gone) if gone else {}
    return [
        delivery_io.Job(p.file_id, p.file_name, outbox / p.rel_path, made.get(p.file_id))
        for p in pending
    ]


def deliver_pending(
    con: duckdb.DuckDBPyConnection,
    outbox: Path,
    targets: Sequence[DeliveryTarget],
    when: dt.datetime,
    pending: Sequence[marks.Pending] | None = None,
) -> list[marks.DeliveryRow]:
    """Deliver `pending` (default: every file waiting, §8.1) to its CMO's target and mark
    each outcome in the state as it comes in.  Returns the tries, oldest file first."""
    by_cmo = {t.cmo_id: t for t in targets}
    if pending is None:
        pending = marks.pending_deliveries(con, by_cmo)
    pending = [p for p in pending if p.cmo_id in by_cmo]
    if not pending:
        return []
    urls = {t.cmo_id: delivery_io.safe_url(t.url) for t in targets}
    jobs = _jobs(con, outbox, pending)
    work = [
        (target, [j for j, p in zip(jobs, pending, strict=True) if p.cmo_id == target.cmo_id])
        for target in targets
    ]
    by_id = {p.file_id: p for p in pending}
    tried: list[tuple[int, marks.DeliveryRow]] = []
    waiting: list[marks.Outcome] = []
    last = time.perf_counter()

    def mark() -> None:
        # the outcomes come in since the last mark, in one transaction: a file whose mark
        # a crash loses is on the server, and the next run finds it there (already_there)
        nonlocal last
        with transaction(con):
            done = marks.record_outcomes(con, waiting, by_id, urls, when)
        for outcome, row in zip(waiting, done, strict=True):
            log.info(
                "delivery of %s to %s: %s %s", row.file_name, row.url, row.outcome, row.message
            )
            tried.append((outcome.file_id, row))
        waiting.clear()
        last = time.perf_counter()

    for batch in delivery_io.deliver(work):
        waiting.extend(batch)
        if time.perf_counter() - last >= MARK_EVERY_S:
            mark()
    if waiting:
        mark()
    order = {p.file_id: n for n, p in enumerate(pending)}  # oldest file first
    return [row for _, row in sorted(tried, key=lambda t: order[t[0]])]


def deliver(run: Run) -> Run:
    """After the exports, before the reports: every written file of a CMO with a
    `[delivery]` section that is not yet delivered goes to it, oldest first (§8.1).  A
    failed delivery leaves the file pending and warns; the run goes on."""
    started = time.perf_counter()
    targets = run.config.delivery
    con = run.store.con
    if targets:
        await_outputs(run)  # the night's files are written (and marked) first
        try:
            run.deliveries = deliver_pending(con, run.paths.outbox, targets, run.as_of)
        except Exception as err:  # noqa: BLE001 - the state is committed; the files stay pending
            log.error("delivery failed: %s", err, exc_info=err)
            run.unexpected.append(f"delivery stopped ({type(err).__name__}: {err}); the files "
                                  "not marked delivered stay pending and the next run tries again")  # fmt: skip
        run.warnings.extend(failure_warnings(run.deliveries))
    run.deliveries_pending = marks.count_pending(con, [t.cmo_id for t in targets])
    timed(run, "deliver", started)
    return run


def failure_warnings(rows: Sequence[marks.DeliveryRow]) -> list[str]:
    """One warning per CMO whose files could not be delivered, with the first reason."""
    failed: dict[str, list[marks.DeliveryRow]] = {}
    for r in rows:
        if r.outcome == marks.FAILED:
            failed.setdefault(r.cmo_id, []).append(r)
    return [
        f"delivery to CMO {cmo} ({fails[0].url}) failed for {len(fails)} file(s): "
        f"{fails[0].message} — they stay pending and the next run tries again"
        for cmo, fails in failed.items()
    ]


# --------------------------------------------------------------------------- cmi redeliver


class UnknownFiles(Exception):
    """Names that are no recorded export file or partner answer (exit 2)."""


@dataclass
class Redelivered:
    written: list[str] = field(default_factory=list)  # paths under the outbox
    deliveries: list[marks.DeliveryRow] = field(default_factory=list)


def redeliver_files(
    con: duckdb.DuckDBPyConnection,
    outbox: Path,
    config: Config,
    names: Sequence[str],
    when: dt.datetime,
) -> Redelivered:
    """`cmi redeliver` (§1): the named recorded files are written into the outbox again and
    delivered again to their CMO's target (when it has one) — asked for, as if new.  Every
    name is checked before anything changes."""
    found, unknown, ambiguous = marks.find_recorded(con, names)
    problems = [f"'{n}' is not a recorded export file or partner answer" for n in unknown]
    problems += [
        f"'{n}' names several files ({', '.join(paths)}): give the one meant as it is written there"
        for n, paths in ambiguous.items()
    ]
    if problems:
        raise UnknownFiles(
            "; ".join(problems)
            + " (exported_files.csv lists the export files; an answer is <request_id>.csv)"
        )
    ids = [f.file_id for f in found]
    with transaction(con):
        marks.ask_again(con, ids)
    try:
        written = outbox_io.write_recorded(con, outbox, ids)
    except outbox_io.NotAllWritten as err:
        marks.mark_written(con, err.written, when)
        raise
    marks.mark_written(con, written, when)
    result = Redelivered(written=[f.rel_path for f in found])
    targets = config.delivery
    pending = [p for p in marks.pending_deliveries(con, [t.cmo_id for t in targets])
               if p.file_id in set(ids)]  # fmt: skip
    result.deliveries = deliver_pending(con, outbox, targets, when, pending)
    return result
