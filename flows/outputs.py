"""Export files and partner answers into the outbox (SPEC §8): recorded with their file's
commit, written (temp, fsync, rename, fsync of the folder), then marked *written* in the
state.  Only recorded files not yet marked are ever written by a run: one that a transfer
tool or a person moved away after it was written stays away (`cmi redeliver` asks for it)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

import duckdb

from connectors import inbox as inbox_io
from connectors import outbox as outbox_io
from connectors.faults import is_environmental
from flows.run_state import Run
from transforms import delivery as marks

log = logging.getLogger("cmi")


def _twin_clock(run: Run) -> dt.datetime | None:
    """The run's clock when export files and answers get an `.xlsx` twin (§5.4), else None."""
    return run.as_of if run.config.reports.partner_xlsx else None


def _write_and_mark(con: duckdb.DuckDBPyConnection, run: Run, file_ids: Iterable[int]) -> list[int]:
    """Write the files now, mark the written ones; an error names what was not written."""
    try:
        written = outbox_io.write_recorded(con, run.paths.outbox, file_ids, _twin_clock(run))
    except outbox_io.NotAllWritten as err:
        marks.mark_written(con, err.written, run.as_of)
        raise
    marks.mark_written(con, written, run.as_of)
    return written


def write_unwritten_outputs(run: Run) -> None:
    """Before anything else: clear what a killed run left half-written, then write every
    recorded export file and answer not yet marked written (a run stopped between a
    file's commit and its mark).  An outbox that cannot be written (full, read-only)
    stops the run before any file is applied (§8 stop, don't cascade); another failure
    is reported, the files stay recorded (unmarked) for a later run."""
    outbox = run.paths.outbox
    outbox_io.remove_stale_temp_files(outbox)
    con = run.store.con
    ids = marks.unwritten_files(con)
    if not ids:
        return
    try:
        written = _write_and_mark(con, run, ids)
    except Exception as err:  # noqa: BLE001 - reported; the files stay recorded
        if is_environmental(err):
            raise
        log.error("writing unwritten outputs failed: %s", err, exc_info=err)
        run.unexpected.append(
            f"recorded export or answer files could not be written ({type(err).__name__}: "
            f"{err}); they stay recorded and a later run writes them"
        )
        return
    names = [r[0] for r in con.execute(
        "SELECT rel_path FROM outbox_files WHERE file_id IN (SELECT unnest(?::BIGINT[])) "
        "ORDER BY file_id", [written]).fetchall()]  # fmt: skip
    run.warnings.append(
        f"{len(written)} export or partner answer file(s) recorded by an earlier run that "
        "was stopped before writing them were written now: "
        + ", ".join(names[:5])
        + (" …" if len(names) > 5 else "")
    )


def resend_answers_missing_from_outbox(
    run: Run, con: duckdb.DuckDBPyConnection, file_ids: Iterable[int]
) -> list[str]:
    """A partner repeated a request it was answered before (§5.5): its first answer is
    written and delivered again when it is no longer in the outbox.  Runs inside the
    request file's transaction, so the file and this decision commit together."""
    ids = sorted(set(file_ids))
    if not ids or run.dry_run:  # cmi validate writes nothing but its report
        return []
    rows = con.execute(  # a file not yet marked written is written anyway
        "SELECT file_id, rel_path FROM outbox_files "
        "WHERE file_id IN (SELECT unnest(?::BIGINT[])) AND written_at IS NOT NULL",
        [ids],
    ).fetchall()
    gone = [(int(fid), str(rel)) for fid, rel in rows if not (run.paths.outbox / rel).exists()]
    marks.ask_again(con, [fid for fid, _ in gone])
    return [rel for _, rel in gone]


def write_outputs_after_commit(run: Run, f: inbox_io.InboxFile) -> None:
    """Start writing the export files and answers not yet written (those the file just
    recorded, or asked for again); the run goes on meanwhile (`await_outputs` waits for
    them and marks them).  The file is applied whatever happens to them: what cannot be
    written stays unmarked and the next run writes it (§8)."""
    if run.dry_run:  # cmi validate writes nothing but its report
        return
    con = run.store.con
    ids = [fid for fid in marks.unwritten_files(con) if fid not in run.output_ids]
    if not ids:
        return
    run.output_ids.update(ids)
    # a cursor of its own: the run's connection stays with the run's thread
    job = run.output_writer().submit(
        outbox_io.write_recorded, con.cursor(), run.paths.outbox, ids, _twin_clock(run)
    )
    run.outputs.append((f.name, job))


def raise_failed_outputs(run: Run) -> None:
    """Between two files: when writing an earlier file's outputs failed because the outbox
    cannot be written, stop the run now (§8 stop, don't cascade): that file is applied and
    its outputs recorded (the next run writes them); the files after it stay in the inbox."""
    for name, job in run.outputs:
        err = job.exception() if job.done() else None
        if err is not None and is_environmental(err):
            log.error("writing the outputs of %s failed: %s", name, err, exc_info=err)
            await_outputs(run, stop=False)
            raise err


def await_outputs(run: Run, *, stop: bool = True) -> None:
    """Wait for the files being written and mark the written ones.  An outbox that cannot
    be written stops the run (raised when `stop`, after every job ended); another failure
    is reported (§8).  Either way the files not written stay unmarked: the next run
    writes them."""
    con = run.store.con
    failure: BaseException | None = None
    for name, job in run.outputs:
        try:
            marks.mark_written(con, job.result(), run.as_of)
        except Exception as err:  # noqa: BLE001 - the state is committed; report, do not quarantine
            if isinstance(err, outbox_io.NotAllWritten):
                marks.mark_written(con, err.written, run.as_of)
            log.error("writing the outputs of %s failed: %s", name, err, exc_info=err)
            if is_environmental(err):
                failure = failure or err
                continue
            run.unexpected.append(
                f"{name} was applied, but its export or answer files could not be written "
                f"({type(err).__name__}: {err}); they are recorded and the next run writes them"
            )
    run.outputs.clear()
    run.output_ids.clear()
    run.stop_output_writer()
    if failure is not None and stop:
        raise failure
