"""A read-only view of the state store, with a scratch overlay for `cmi validate` and
`cmi status` (SPEC §1).

The store's file is never opened for writing and never copied.  An in-memory DuckDB
database holds the product's schema; the store is ATTACHed `READ_ONLY` beside it and
each of its tables is shown in the in-memory database as a view of the store's table
of that name, so the rules read the current state through the very names they use in
a run.  A rule cannot write into a view: before a file is judged, `materialise` turns
the tables its kind writes into in-memory tables holding a copy of the store's rows
(only those tables).  The serial pool, the biggest (100M serials in a store's fifth
year), is only ever appended to: for a pool or generation file it becomes a view of the
store's pool and an in-memory `pool_added`, into which `insert_serials` appends
(`transforms.state.appended_to`); so do the logs that only grow (`APPEND_ONLY`: the
contract log, allocations, order lines seen, shipping exceptions).  The packaging
hierarchy (`PER_CMO`: 50M links of hundreds of CMOs) is read and changed one CMO at a
time: a shipping document's sender's stored rows are copied into `<table>_cmos` when a
rule first asks for them (`transforms.state.cmo_rows`), and the view shows the other
CMOs' stored rows and those.  The effects of each file stay in memory, where the next file sees them, and
vanish when the view is closed: the store's bytes (its WAL too) never change.

Readers share the store's lock (`flock` shared): a run cannot start while a view is
open (DuckDB would refuse it the file anyway) and says so; a view cannot open while
a run holds the lock, and says where the latest completed run's reports are.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

import duckdb

from connectors.config import ConfigError
from connectors.store import (
    StateLocked,
    Store,
    configure,
    create_schema,
    holder_note,
    lock_path,
    not_a_store,
)
from transforms.state import APPEND_ONLY, PER_CMO

STATE = "state"  # the catalog name of the attached store


def _run_holds(path: Path) -> StateLocked:
    return StateLocked(
        f"a run is using the state store {path}; "
        + holder_note(path)
        + "; try again when the run has finished"
    )


def _lock_shared(path: Path) -> IO[str]:
    """The store's lock, shared, taken without changing anything (§1: validate changes
    nothing): the lock file is opened read-only, and never made.  A store without a lock
    file (none yet: its first run made no lock, or it was copied without it) is held by
    no run — a run makes the file before it locks it — and the run that would start
    meanwhile meets DuckDB's own lock of the file (`open_state_view`, `open_store`)."""
    if not path.exists():  # no store yet: nothing to share
        return open(os.devnull, "a+")  # noqa: SIM115 - closed by Store.close
    try:
        handle = lock_path(path).open("r")
    except FileNotFoundError:
        return open(os.devnull, "a+")  # noqa: SIM115 - closed by Store.close
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError as err:
        handle.close()
        raise _run_holds(path) from err
    return handle


def _columns(con: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, list[str]]:
    rows = con.execute(
        """SELECT table_name, column_name FROM duckdb_columns()
           WHERE database_name = ? AND schema_name = 'main'
             AND table_name IN (SELECT table_name FROM duckdb_tables()
                                WHERE database_name = ? AND schema_name = 'main')
           ORDER BY table_name, column_index""",
        [catalog, catalog],
    ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(str(table), []).append(str(column))
    return out


class StateView:
    """The in-memory database over the attached store; see the module docstring."""

    def __init__(self, con: duckdb.DuckDBPyConnection, attached: bool) -> None:
        self.con = con
        self.attached = attached
        memory = con.execute("SELECT current_database()").fetchone()
        self._memory = str(memory[0]) if memory else "memory"
        # the schema's CREATE TABLE of every table (constraints included), to materialise
        self._ddl = {
            str(t): str(sql)
            for t, sql in con.execute(
                "SELECT table_name, sql FROM duckdb_tables() WHERE database_name = ?",
                [self._memory],
            ).fetchall()
        }
        self._columns = _columns(con, self._memory)
        self.viewed: set[str] = set()  # tables shown as views of the store's
        self.materialised: list[str] = []  # in the order they were copied

    def show_store(self) -> None:
        """Replace each empty in-memory table by a view of the store's table of that name
        (a table the store lacks stays empty).  A store written by an earlier cmi (a table
        without a column of this version) is copied whole instead, then brought up to date
        by the schema's own statements, as a run would (a one-off, after an upgrade)."""
        stored = _columns(self.con, STATE)
        shared = [t for t in self._columns if t in stored]
        if any(not set(self._columns[t]) <= set(stored[t]) for t in shared):
            types = dict(
                ((str(t), str(c)), str(ty))
                for t, c, ty in self.con.execute(
                    "SELECT table_name, column_name, data_type FROM duckdb_columns() "
                    "WHERE database_name = ? AND schema_name = 'main'",
                    [STATE],
                ).fetchall()
            )
            for table in shared:
                for column in stored[table]:
                    if column not in self._columns[table]:  # dropped by a later migration
                        self.con.execute(
                            f"ALTER TABLE main.{table} ADD COLUMN {column} {types[(table, column)]}"
                        )
                # the store's rows only (a fresh schema's migrations mark `meta`)
                self.con.execute(f"DELETE FROM main.{table}")
                self._copy(table, stored[table])
                self.materialised.append(table)
            create_schema(self.con)
        else:
            for table in shared:
                self.con.execute(f"DROP TABLE main.{table}")
                self.con.execute(
                    f"CREATE VIEW main.{table} AS "
                    f"SELECT {', '.join(self._columns[table])} FROM {STATE}.main.{table}"
                )
                self.viewed.add(table)
        self._continue_sequences()

    def _copy(self, table: str, columns: list[str]) -> None:
        cols = ", ".join(columns)
        self.con.execute(
            f"INSERT INTO main.{table} ({cols}) SELECT {cols} FROM {STATE}.main.{table}"
        )

    def _continue_sequences(self) -> None:
        """Each sequence goes on after the store's last value (a number handed out in the
        store is never handed out again in the overlay; gaps do not matter)."""
        rows = self.con.execute(
            "SELECT sequence_name, start_value, last_value FROM duckdb_sequences() "
            "WHERE database_name = ?",
            [STATE],
        ).fetchall()
        for name, start, last in rows:
            following = max(int(start), int(last) + 1 if last is not None else int(start))
            self.con.execute(f"CREATE OR REPLACE SEQUENCE main.{name} START {following}")

    def materialise(self, tables: list[str] | tuple[str, ...]) -> None:
        """Turn these views into in-memory tables holding the store's rows, so that a rule
        may write them (a table already materialised, or not in the store, is left)."""
        for table in tables:
            if table not in self.viewed:
                continue
            self.con.execute(f"DROP VIEW main.{table}")
            cols = ", ".join(self._columns[table])
            if table in APPEND_ONLY:
                # only appended to: the overlay holds the added rows, the view shows the
                # store's and them (a year-five pool is 100M serials: no copy of it)
                self.con.execute(self._renamed_ddl(table, f"{table}_added"))
                self.con.execute(
                    f"CREATE VIEW main.{table} AS SELECT {cols} FROM {STATE}.main.{table} "
                    f"UNION ALL SELECT {cols} FROM main.{table}_added"
                )
            elif table in PER_CMO:
                # changed one CMO at a time (`transforms.state.cmo_rows`): the rows of the
                # CMOs a file changed are copied when it first does, the others stay the
                # store's (a year-five store holds 50M links of hundreds of CMOs)
                self.con.execute(self._renamed_ddl(table, f"{table}_cmos"))
                self.con.execute(f"CREATE TABLE main.{table}_taken (cmo_id VARCHAR)")
                self.con.execute(
                    f"CREATE VIEW main.{table}_stored AS SELECT {cols} FROM {STATE}.main.{table}"
                )
                self.con.execute(
                    f"CREATE VIEW main.{table} AS SELECT {cols} FROM main.{table}_stored "
                    f"WHERE cmo_id NOT IN (SELECT cmo_id FROM main.{table}_taken) "
                    f"UNION ALL SELECT {cols} FROM main.{table}_cmos"
                )
            else:
                self.con.execute(self._ddl[table])
                self._copy(table, self._columns[table])
            self.viewed.discard(table)
            self.materialised.append(table)

    def _renamed_ddl(self, table: str, name: str) -> str:
        """The schema's CREATE TABLE of `table` (its constraints too), for a table `name`."""
        ddl = self._ddl[table]
        head = f"CREATE TABLE {table}("
        if not ddl.startswith(head):
            raise RuntimeError(f"unexpected DDL of {table}: {ddl[:80]}")
        return f"CREATE TABLE main.{name}(" + ddl[len(head) :]

    def materialise_all(self) -> None:
        self.materialise(sorted(self.viewed))


def open_state_view(path: Path, *, temp_dir: Path | None = None) -> tuple[Store, StateView]:
    """Open the store at `path` read-only behind an in-memory overlay (shared lock).

    A store that does not exist yet is an empty state.  `temp_dir`: where DuckDB may
    spill the overlay when it outgrows memory (default: a new folder under the system's
    temporary folder, never beside the store)."""
    handle = _lock_shared(path)
    con: duckdb.DuckDBPyConnection | None = None
    spill = None
    try:
        con = duckdb.connect(":memory:")
        if temp_dir is None:
            spill = tempfile.TemporaryDirectory(prefix="cmi-view-")
            temp_dir = Path(spill.name)
        configure(con, temp_dir)
        create_schema(con)
        view = StateView(con, attached=path.exists())
        if path.exists():
            try:
                con.execute(f"ATTACH '{_sql_text(str(path))}' AS {STATE} (READ_ONLY)")
            except duckdb.IOException as err:
                # a run opened the store between the look for its lock file and here
                if "conflicting lock" in str(err).lower():
                    raise _run_holds(path) from err
                usage = not_a_store(err, path)
                if usage is not None:
                    raise usage from err
                raise
            _check_format(con, path)
            view.show_store()
    except BaseException:
        if con is not None:
            con.close()
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()
        if spill is not None:
            spill.cleanup()
        raise
    store = Store(path, con, handle, checkpoint=False)  # nothing of the overlay is kept
    if spill is not None:
        store.cleanups.append(spill.cleanup)
    return store, view


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def _check_format(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    row = con.execute(
        """SELECT count(*) FROM duckdb_tables()
           WHERE database_name = ? AND table_name = 'serials'""",
        [STATE],
    ).fetchone()
    if row and row[0]:
        raise ConfigError(
            f"the state store {path} was written by an earlier version of cmi (a 'serials' "
            "table) that this version cannot read: start a new state store with --state"
        )
