"""The state store's tables (DuckDB).  One place for the serial side's DDL.

Other sides (contracts, shipping) keep their DDL beside it in `ddl_contracts.py`
and `ddl_shipping.py`; `connectors.store` creates all of them.
"""

import duckdb

from transforms.codes import serial_num_sql, serial_txt_sql

# The layout of the state store's tables.  Raised whenever a change needs a store
# written before it to be migrated when opened (`connectors.store.create_schema`); the
# benchmarks key their cached stores by it.
# 2: the pool's serials compressed; 3: a serial stored as a number where it is one
# (`migrate_pool`)
STORE_FORMAT = 3

# the marks of §8 / §8.1 on each recorded file (NULL: not yet); the times are the run's
# clock.  `migrate_outbox_marks` adds them to a store written before they existed.
OUTBOX_MARK_COLUMNS = {
    "written_at": "TIMESTAMP",  # written to the outbox (temp, fsync, rename, fsync)
    "delivered_at": "TIMESTAMP",  # delivered to the CMO's [delivery] URL, or found there
    "delivered_to": "VARCHAR",  # that URL (it never holds a secret)
    "delivery_attempts": "INTEGER DEFAULT 0",  # tries that ended, failed ones included
}
OUTBOX_MARKS = ", ".join(f"{name} {kind}" for name, kind in OUTBOX_MARK_COLUMNS.items())

# The pool: every serial a product ever had, in arrival order (pseq), immutable.  A
# serial is stored as a number (`num`) where it is the plain decimal form of one, else
# as text (`txt`, FSST-compressed): see `transforms.codes.serial_num`.  Exactly one of
# the two is set.
POOL_DDL = """CREATE TABLE IF NOT EXISTS pool (
        pid INTEGER NOT NULL USING COMPRESSION rle,
        pseq BIGINT NOT NULL USING COMPRESSION bitpacking,
        num BIGINT,
        txt VARCHAR USING COMPRESSION fsst)"""

SERIAL_DDL = [
    """CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, as_of TIMESTAMP, started_at TIMESTAMP, finished_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS processed_files (
        sha256 VARCHAR, kind VARCHAR, name VARCHAR, run_id VARCHAR, outcome VARCHAR,
        PRIMARY KEY (kind, sha256))""",
    """CREATE TABLE IF NOT EXISTS products (
        product_code VARCHAR PRIMARY KEY, product_name VARCHAR NOT NULL, stock_unit VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cmos (
        cmo_id VARCHAR PRIMARY KEY, cmo_name VARCHAR, street1 VARCHAR, street2 VARCHAR,
        street3 VARCHAR, city VARCHAR, state VARCHAR, zip_code VARCHAR, country VARCHAR,
        collaboration_channel VARCHAR, sgln VARCHAR,
        partnership_status VARCHAR NOT NULL DEFAULT 'none', contact_email VARCHAR,
        tenant VARCHAR, payment_model VARCHAR, deleted BOOLEAN NOT NULL DEFAULT FALSE)""",
    # produceable products of a CMO, in the order the file listed them
    """CREATE TABLE IF NOT EXISTS cmo_products (
        cmo_id VARCHAR NOT NULL, product_code VARCHAR NOT NULL, pos INTEGER NOT NULL)""",
    # Serials (SPEC §5).  A product's serials are numbered in arrival order (`pseq`,
    # from 0: the FIFO order); `pool` holds the immutable (product, number, serial)
    # triples, `serial_runs` the status of every serial run-length encoded (see
    # transforms/serial_runs.py).  No index: uniqueness is checked set-based by
    # anti-joins, which keeps loading tens of millions of serials fast and small.
    """CREATE TABLE IF NOT EXISTS serial_products (
        product_code VARCHAR PRIMARY KEY, pid INTEGER NOT NULL UNIQUE,
        size BIGINT NOT NULL)            -- serials the product ever had: pseq 0 .. size-1""",
    # (a product's serials lie together and are numbered in order: its pid is one value
    # per block and pseq packs into a few bits; the serials are FSST-compressed: 12-digit
    # ones take 6.6 bytes instead of 16, random 20-character ones 20 instead of 24.
    # Named, not left to DuckDB's choice, which weighs every kind first: a 10M-serial
    # insert takes 1.7 s so, 2.9 s by choice, 1.1 s uncompressed)
    POOL_DDL,
    # where each arrival range came from (audit)
    """CREATE TABLE IF NOT EXISTS pool_loads (
        pid INTEGER NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL,
        source VARCHAR NOT NULL,         -- 'pool' | 'generated'
        run_id VARCHAR, file VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS serial_runs (
        pid INTEGER NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL,  -- serials [lo, hi)
        cmo_id VARCHAR,                  -- holder; NULL = available in the pool
        assign_seq BIGINT,               -- assignment order of the serial at lo; NULL when available
        export_count INTEGER NOT NULL,   -- times written to an export file
        last_export_id BIGINT,           -- outbox file id of the latest export
        request_id VARCHAR,              -- partner request that took them (no longer 'assigned')
        commissioned BOOLEAN NOT NULL,   -- reported by the CMO with outcome OK (SPEC §6)
        shipped BOOLEAN NOT NULL,
        lot VARCHAR,                     -- commissioning ILMD (SPEC §6)
        expiry DATE,
        decommissioned BOOLEAN NOT NULL DEFAULT FALSE)  -- reported decommissioned (SPEC §6)""",
    # a store written before `decommissioned` existed gets it when opened (last column, as
    # in a new store: the runs are written by position)
    "ALTER TABLE serial_runs ADD COLUMN IF NOT EXISTS decommissioned BOOLEAN DEFAULT FALSE",
    # one row per serial, for people and ad-hoc queries (the product never reads it)
    """CREATE OR REPLACE VIEW serials AS
        SELECT (p.pid::BIGINT << 40) | p.pseq AS sid, sp.product_code,
               coalesce(p.txt, p.num::VARCHAR) AS serial, p.pid, p.pseq,
               r.cmo_id, r.assign_seq + (p.pseq - r.lo) AS assign_seq, r.export_count,
               r.last_export_id, r.request_id, r.commissioned, r.shipped, r.decommissioned, r.lot,
               r.expiry,
               l.source
        FROM pool p JOIN serial_products sp ON sp.pid = p.pid
        JOIN serial_runs r ON r.pid = p.pid AND p.pseq >= r.lo AND p.pseq < r.hi
        JOIN pool_loads l ON l.pid = p.pid AND p.pseq >= l.lo AND p.pseq < l.hi""",
    # Every export file and partner answer, recorded with its serials in the same
    # transaction as the serial status change; written to the outbox afterwards, then
    # marked written; delivered to the CMO (§8.1), then marked delivered (SPEC §8).
    """CREATE TABLE IF NOT EXISTS outbox_files (
        file_id BIGINT PRIMARY KEY, kind VARCHAR NOT NULL,  -- 'export' | 'partner'
        cmo_id VARCHAR NOT NULL, product_code VARCHAR NOT NULL, rel_path VARCHAR NOT NULL,
        file_name VARCHAR NOT NULL, count BIGINT NOT NULL, created TIMESTAMP NOT NULL,
        can_contain_duplicates BOOLEAN NOT NULL, request_id VARCHAR, quantity BIGINT,
        run_id VARCHAR NOT NULL, """
    + OUTBOX_MARKS
    + ")",
    # the serials of each file: ranges of one product's serials, in file order
    # (`ord`: the position of the range's first serial in the file, from 0)
    """CREATE TABLE IF NOT EXISTS outbox_ranges (
        file_id BIGINT NOT NULL, ord BIGINT NOT NULL, pid INTEGER NOT NULL,
        lo BIGINT NOT NULL, hi BIGINT NOT NULL)""",
    """CREATE SEQUENCE IF NOT EXISTS seq_assign START 1""",
    """CREATE SEQUENCE IF NOT EXISTS seq_outbox_file START 1""",
]


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    """The columns of a table of the store (none when it does not exist yet)."""
    return {
        str(r[0])
        for r in con.execute(
            """SELECT column_name FROM duckdb_columns()
               WHERE database_name = current_database() AND schema_name = 'main'
                 AND table_name = ?""",
            [table],
        ).fetchall()
    }


def migrate_outbox_marks(con: duckdb.DuckDBPyConnection) -> None:
    """After `SERIAL_DDL`: a store written before the *written* and *delivered* marks gets
    their columns, and every file it recorded counts as written (it was, by the run that
    recorded it or the next).  One transaction: a run stopped in between redoes it all."""
    have = _columns(con, "outbox_files")
    missing = [name for name in OUTBOX_MARK_COLUMNS if name not in have]
    if not missing:
        return
    con.execute("BEGIN TRANSACTION")
    try:
        for name in missing:
            con.execute(f"ALTER TABLE outbox_files ADD COLUMN {name} {OUTBOX_MARK_COLUMNS[name]}")
        if "written_at" in missing:
            con.execute("UPDATE outbox_files SET written_at = created")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def migrate_pool(con: duckdb.DuckDBPyConnection) -> None:
    """Before `SERIAL_DDL`: a store written before STORE_FORMAT 3 keeps each serial as a
    string (`serial`; before STORE_FORMAT 2 uncompressed).  The pool is copied once, in
    arrival order, into a table made by `POOL_DDL`, each serial split into its number or
    its text, then the copy takes the pool's place in one small transaction that only
    changes names.  A run stopped during the copy finds the pool as it was and copies
    again; the large write is never part of the transaction that drops the old pool.
    A new store's pool has the new columns and is left as it is."""
    columns = _columns(con, "pool")
    if "serial" not in columns:
        return
    copy = "pool_format_copy"
    con.execute(f"DROP TABLE IF EXISTS {copy}")
    con.execute(POOL_DDL.replace("pool (", f"{copy} (", 1))
    con.execute(
        f"""INSERT INTO {copy} SELECT pid, pseq, {serial_num_sql("serial")},
            {serial_txt_sql("serial")} FROM pool"""
    )
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DROP TABLE pool")
        con.execute(f"ALTER TABLE {copy} RENAME TO pool")
        con.execute("DROP TABLE IF EXISTS pool_compressed_copy")  # a format-2 leftover
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
