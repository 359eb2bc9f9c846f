"""Export files and partner answers: written after their file's commit, and again at the
start of a run when a recorded one is missing (SPEC §8)."""

from __future__ import annotations

import logging

from connectors import inbox as inbox_io
from connectors import outbox as outbox_io
from flows.run_state import Run

log = logging.getLogger("cmi")


def write_missing_outputs(run: Run) -> None:
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


def write_outputs_after_commit(run: Run, f: inbox_io.InboxFile) -> None:
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
