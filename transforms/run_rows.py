"""No report row lost (SPEC §8): a run report's rows are recorded with their file's commit,
and every run's rows end up in exactly one report folder.

A run's report folder is written under a temporary name and renamed into place: it
is there whole or not at all.  Before writing it, a run *claims* the rows of every
run that no report folder holds yet — its own and those of runs that were killed or
could not write theirs — and, once its folder is in place, marks them *done* and
drops the recorded rows (`report_rows`) that it now holds.  A run stopped between
the claim and the mark leaves the claim: the next run keeps it when the claiming
run's folder is there (`settle_claims`), and takes the rows over otherwise.

Allocations and the contract log are read from the contract side's own tables by
run (`transforms.contract_reports`); the other run reports from `report_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import polars as pl


def record_rows(
    con: duckdb.DuckDBPyConnection, run_id: str, report: str, rows: pl.DataFrame
) -> None:
    """Record `rows` (the report's columns) as one more file's rows of `report` in run
    `run_id` (call inside the file's transaction)."""
    if rows.height == 0:
        return
    (file_ord,) = con.execute(
        "SELECT coalesce(max(file_ord), 0) + 1 FROM report_rows WHERE run_id = ?", [run_id]
    ).fetchone() or (1,)
    encoded = rows.select(pl.struct(pl.all()).struct.json_encode().alias("row_json"))
    encoded = encoded.with_row_index("row_ord")
    con.register("_cmi_report_rows", encoded)
    try:
        con.execute(
            """INSERT INTO report_rows
               SELECT ?, ?, ?, row_ord, row_json FROM _cmi_report_rows ORDER BY row_ord""",
            [run_id, report, file_ord],
        )
    finally:
        con.unregister("_cmi_report_rows")


def recorded_rows(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    report: str,
    schema: dict[str, pl.DataType],
) -> pl.DataFrame:
    """The recorded rows of `report` of the runs `run_ids`, in that order of runs, then file
    and row order, with exactly the columns of `schema` (a column a row lacks is null)."""
    found = con.execute(
        """SELECT row_json FROM report_rows
           WHERE report = ? AND list_contains(?::VARCHAR[], run_id)
           ORDER BY list_position(?::VARCHAR[], run_id), file_ord, row_ord""",
        [report, list(run_ids), list(run_ids)],
    ).pl()
    if found.height == 0:
        return pl.DataFrame(schema=schema)
    decoded = found.get_column("row_json").str.json_decode(pl.Struct(schema))
    return decoded.struct.unnest().select(list(schema))


def claim_unreported(con: duckdb.DuckDBPyConnection, run_id: str) -> list[str]:
    """Claim for run `run_id`'s report folder the rows of every run no folder holds yet (its
    own included); return those runs, oldest first (`run_id` last)."""
    con.execute(
        """INSERT INTO run_reports
           SELECT run_id, ?, FALSE FROM runs
           WHERE run_id NOT IN (SELECT run_id FROM run_reports)""",
        [run_id],
    )
    return [
        str(r[0])
        for r in con.execute(
            """SELECT c.run_id FROM run_reports c JOIN runs r USING (run_id)
               WHERE c.reported_in = ?
               ORDER BY c.run_id = ?, r.started_at, c.run_id""",
            [run_id, run_id],
        ).fetchall()
    ]


def confirm_reported(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Run `run_id`'s report folder is in place: its claims are done and the recorded rows
    it holds are dropped (call inside one transaction)."""
    con.execute("UPDATE run_reports SET done = TRUE WHERE reported_in = ? AND NOT done", [run_id])
    _drop_reported(con)


def pending_claims(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The runs that claimed rows and did not mark them done (stopped in between)."""
    return [
        str(r[0])
        for r in con.execute(
            "SELECT DISTINCT reported_in FROM run_reports WHERE NOT done ORDER BY 1"
        ).fetchall()
    ]


def settle_claims(con: duckdb.DuckDBPyConnection, written: Sequence[str]) -> None:
    """Of the `pending_claims`: those whose report folder was written (`written`) are
    done; the others are given up, so that the next report folder takes their rows (call
    inside one transaction)."""
    con.execute(
        "UPDATE run_reports SET done = TRUE WHERE NOT done AND list_contains(?::VARCHAR[], reported_in)",
        [list(written)],
    )
    con.execute("DELETE FROM run_reports WHERE NOT done")
    _drop_reported(con)


def _drop_reported(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """DELETE FROM report_rows WHERE run_id IN (SELECT run_id FROM run_reports WHERE done)"""
    )
