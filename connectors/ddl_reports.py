"""The state store's tables for the rows of run reports (SPEC §8 no report row lost, §10).

A run report's rows (rejects, allocations, contract log, shipping reconciliation and
exceptions) are recorded in the state in the transaction of the file they come from,
so that a run killed after committing a file, or one that could not write its report
folder, loses none of them: the next run's report folder holds them too.

- `report_rows` — the rows of `rejects.csv`, `shipping_reconciliation.csv` and
  `shipping_exceptions.csv` of each run, one JSON object per row (the report's
  columns), in file order then row order.  Kept only until a report folder holds
  them: they are deleted once it is written.  (Allocations and the contract log are
  business records the contract side keeps anyway, in `contract_allocations` and
  `contract_log`, by run.)
- `run_reports` — for each run whose rows a report folder holds or is being written
  to hold: that folder's run (`reported_in`) and whether it was written (`done`).  A
  run without a row here has rows no report folder holds yet.  One small row per run.
"""

import duckdb

REPORT_DDL = [
    """CREATE TABLE IF NOT EXISTS report_rows (
        run_id VARCHAR NOT NULL,         -- the run that applied the file
        report VARCHAR NOT NULL,         -- e.g. 'rejects.csv'
        file_ord BIGINT NOT NULL,        -- the file's place among the run's recorded files
        row_ord BIGINT NOT NULL,         -- the row's place among the file's rows
        row_json VARCHAR NOT NULL)       -- the row: {column: value} of the report""",
]

_RUN_REPORTS = """CREATE TABLE run_reports (
    run_id VARCHAR PRIMARY KEY, reported_in VARCHAR NOT NULL, done BOOLEAN NOT NULL)"""


def migrate_reports(con: duckdb.DuckDBPyConnection) -> None:
    """Create `run_reports`; in a store written before it existed, every run that finished
    wrote its own report folder: those runs are reported (the others never were)."""
    (exists,) = con.execute(
        """SELECT count(*) FROM duckdb_tables()
           WHERE database_name = current_database() AND table_name = 'run_reports'"""
    ).fetchone() or (0,)
    if exists:
        return
    con.execute("BEGIN TRANSACTION")
    con.execute(_RUN_REPORTS)
    con.execute(
        "INSERT INTO run_reports SELECT run_id, run_id, TRUE FROM runs WHERE finished_at IS NOT NULL"
    )
    con.execute("COMMIT")
