"""Export files and partner answers: written after their file's commit, and again at the
start of a run when a recorded one is missing (SPEC §8)."""

from __future__ import annotations

import datetime as dt
import logging

from connectors import inbox as inbox_io
from connectors import outbox as outbox_io
from connectors.faults import is_environmental
from flows.run_state import Run

log = logging.getLogger("cmi")


def _twin_clock(run: Run) -> dt.datetime | None:
    """The run's clock when export files and answers get an `.xlsx` twin (§5.4), else None."""
    return run.as_of if run.config.reports.partner_xlsx else None


def write_missing_outputs(run: Run) -> None:
    """Before anything else: clear what a killed run left half-written, then write every
    recorded export file and answer that is missing (§8).  An outbox that cannot be
    written (full, read-only) stops the run before any file is applied (§8 stop, don't
    cascade); another failure is reported, the files stay recorded for a later run."""
    outbox = run.paths.outbox
    outbox_io.remove_stale_temp_files(outbox)
    try:
        written = outbox_io.materialize_missing(run.store.con, outbox, twins=_twin_clock(run))
    except Exception as err:  # noqa: BLE001 - reported; the files stay recorded
        if is_environmental(err):
            raise
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


def write_outputs_after_commit(run: Run, f: inbox_io.InboxFile) -> None:
    """Start writing the export files and answers the file recorded; the run goes on
    meanwhile (`await_outputs` waits for them).  The file is applied whatever happens to
    them: what cannot be written stays recorded and the next run writes it (§8)."""
    if run.dry_run:  # cmi validate writes nothing but its report
        return
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
        outbox_io.materialize_missing, con.cursor(), run.paths.outbox, ids, _twin_clock(run)
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
    """Wait for the files being written.  An outbox that cannot be written stops the run
    (raised when `stop`, after every job ended); another failure is reported (§8)."""
    failure: BaseException | None = None
    for name, job in run.outputs:
        try:
            job.result()
        except Exception as err:  # noqa: BLE001 - the state is committed; report, do not quarantine
            log.error("writing the outputs of %s failed: %s", name, err, exc_info=err)
            if is_environmental(err):
                failure = failure or err
                continue
            run.unexpected.append(
                f"{name} was applied, but its export or answer files could not be written "
                f"({type(err).__name__}: {err}); they are recorded and the next run writes them"
            )
    run.outputs.clear()
    run.stop_output_writer()
    if failure is not None and stop:
        raise failure
