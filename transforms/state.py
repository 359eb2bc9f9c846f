"""Small shared helpers over the state tables: counters and frame registration."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import duckdb
import polars as pl
import pyarrow as pa

_names = itertools.count(1)


# tables the rules only ever append to: the serial pool (serials are immutable) and the
# logs of what runs did
APPEND_ONLY = (
    "pool",
    "contract_log",
    "contract_allocations",
    "contract_order_lines",
    "shipping_exception_log",
)
# tables whose rows the rules read and change one CMO at a time (`cmo_rows`): the
# packaging hierarchy a CMO's shipping documents build
PER_CMO = ("shipping_aggregation", "shipping_parents")


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    ((found,),) = con.execute(
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE database_name = current_database() AND table_name = ?",
        [name],
    ).fetchall()
    return bool(found)


def appended_to(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """The table that rows appended to `table` go into: `<table>_added` in `cmi validate`'s
    overlay (`connectors.state_view`: there `table` is a view of the store's rows and the
    added ones, so that a year of serials is not copied to judge a night), else `table`."""
    return f"{table}_added" if _has_table(con, f"{table}_added") else table


def cmo_rows(con: duckdb.DuckDBPyConnection, table: str, cmo_id: str) -> str:
    """The table to read and change the rows of `cmo_id` in (`table` is one of `PER_CMO`;
    every statement on it names the CMO): `table` itself, or in `cmi validate`'s overlay
    `<table>_cmos`, which holds the rows of the CMOs a file changed so far — this CMO's
    stored rows are copied into it the first time (a fifth year's store holds 50M links of
    hundreds of CMOs; a night's documents come from a few).  There `table` is a view of
    the other CMOs' stored rows and of `<table>_cmos`."""
    overlay = f"{table}_cmos"
    if not _has_table(con, overlay):
        return table
    ((taken,),) = con.execute(
        f"SELECT count(*) FROM {table}_taken WHERE cmo_id = ?", [cmo_id]
    ).fetchall()
    if not taken:
        con.execute(
            f"INSERT INTO {overlay} SELECT * FROM {table}_stored WHERE cmo_id = ?", [cmo_id]
        )
        con.execute(f"INSERT INTO {table}_taken VALUES (?)", [cmo_id])
    return overlay


def take_counter(con: duckdb.DuckDBPyConnection, key: str, n: int) -> int:
    """Reserve `n` consecutive numbers of counter `key`; return the first.

    Counters live in the `meta` table, so they move with the transaction that
    uses them (a rolled-back file gives its numbers back).
    """
    row = con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    first = int(row[0]) if row else 1
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, str(first + n)])
    return first


def register(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    prefix: str = "f",
    *,
    scan_only: bool = False,
) -> str:
    """Register a Polars frame under a fresh view name and return the name.

    `scan_only`: the view is only read whole (no filter on a string column), so its
    strings can be handed over as Arrow string views, without a copy, in batches
    that DuckDB reads in parallel — for tens of millions of serials.  (DuckDB pushes filters down to Arrow, which cannot
    compare string views yet.)
    """
    name = f"_{prefix}_{next(_names)}"
    if scan_only:
        # and in batches of a million rows, which DuckDB scans (and inserts) on all cores
        table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
        batches = table.to_batches(max_chunksize=1 << 20)
        con.register(name, pa.Table.from_batches(batches, schema=table.schema))
    else:
        con.register(name, frame)
    return name


@contextlib.contextmanager
def one_thread(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run DuckDB on one thread inside the block; the setting is restored afterwards."""
    threads = con.execute("SELECT current_setting('threads')").fetchone()
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        con.execute(f"SET threads = {int(threads[0]) if threads else 1}")
