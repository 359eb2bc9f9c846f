"""The persistent state store: an embedded DuckDB file, one writer at a time (SPEC §8).

`open_store` takes an exclusive lock beside the database file (released by the
OS when the process dies, so a killed run never leaves a stale lock), opens the
database and creates every table of every side.  `transaction` wraps one file's
effects: committed together or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import duckdb
import pyarrow.dataset  # noqa: F401 - DuckDB imports it on the first frame it scans: pay it at start-up

from connectors.config import ConfigError
from connectors.ddl import SERIAL_DDL, migrate_outbox_marks, migrate_pool
from connectors.ddl_contracts import CONTRACT_DDL
from connectors.ddl_reports import REPORT_DDL, migrate_reports
from connectors.ddl_shipping import SHIPPING_DDL, migrate_shipping


class _NotInstalled(importlib.abc.MetaPathFinder):
    """Answers "no such module" at once for modules known to be absent.

    DuckDB's client looks for pandas on every statement with parameters; pandas is
    not installed, and Python does not remember a failed import, so each look
    searches the whole path (about 0.1 ms, thousands of times a night).
    """

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name in self.names:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)


if importlib.util.find_spec("pandas") is None:
    sys.meta_path.insert(0, _NotInstalled(frozenset({"pandas"})))


class StateLocked(Exception):
    """Another run holds the state store's lock (exit code 3)."""


def all_ddl() -> list[str]:
    """The DDL of every side of the product (serials, contracts, shipping)."""
    return [*SERIAL_DDL, *CONTRACT_DDL, *SHIPPING_DDL, *REPORT_DDL]


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    migrate_pool(con)  # first: the `serials` view of SERIAL_DDL reads the pool's new columns
    for statement in all_ddl():
        con.execute(statement)
    migrate_outbox_marks(con)
    migrate_shipping(con)
    migrate_reports(con)


def memory_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory store with every table: for tests and pure rules."""
    con = duckdb.connect(":memory:")
    create_schema(con)
    return con


@dataclass
class Store:
    path: Path
    con: duckdb.DuckDBPyConnection
    _lock: IO[str]
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    # False for a read-only view's in-memory overlay (`connectors.state_view`): its
    # changes vanish at close, and a checkpoint would only compress them first (22 s of
    # a validate's 46 s on the 100M-serial store)
    checkpoint: bool = True

    def close(self) -> None:
        if self.checkpoint:
            with contextlib.suppress(Exception):
                self.con.execute("CHECKPOINT")
        with contextlib.suppress(duckdb.Error):  # a store invalidated by a failed write
            self.con.close()
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
        self._lock.close()
        for cleanup in self.cleanups:
            cleanup()

    def note_holder(self, text: str) -> None:
        """Leave a note in the lock file for whoever finds the store locked meanwhile
        (what holds it; where the latest completed run's reports are)."""
        with contextlib.suppress(OSError):
            self._lock.seek(0)
            self._lock.truncate()
            self._lock.write(text)
            self._lock.flush()


def lock_path(path: Path) -> Path:
    """The lock file of the state store at `path`: beside its resolved path (§8), so that
    a symlink or another spelling of the path is the same store and the same lock."""
    real = path.resolve()
    return real.parent / (real.name + ".lock")


def holder_note(path: Path) -> str:
    """What the run holding the store's lock left in the lock file, or a pointer to
    LATEST when it left nothing."""
    with contextlib.suppress(OSError):
        text = lock_path(path).read_text(encoding="utf-8").strip()
        if text:
            return text
    return "its reports and the latest completed run's are under the outbox's reports/ (see reports/LATEST)"


def configure(con: duckdb.DuckDBPyConnection, temp_dir: Path | None) -> None:
    memory = os.environ.get("CMI_DUCKDB_MEMORY", "512MB")
    con.execute(f"SET memory_limit = '{memory}'")
    con.execute("SET preserve_insertion_order = true")
    # Every column compressed: the serials and EPCs by FSST (named in their tables), the
    # rest as DuckDB sees fit (dictionaries for repeated codes, RLE, bit packing): a
    # store in its fifth year takes a third of the disk it took uncompressed.
    # CMI_DUCKDB_COMPRESSION forces one kind (e.g. 'uncompressed') for a test.
    forced = os.environ.get("CMI_DUCKDB_COMPRESSION")
    if forced:
        con.execute(f"SET force_compression = '{forced}'")
    if temp_dir is not None:
        con.execute(f"SET temp_directory = '{temp_dir.as_posix()}'")


def _check_format(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a state file written by an earlier cmi, whose serials were one table row each."""
    row = con.execute(
        """SELECT count(*) FROM information_schema.tables
           WHERE table_name = 'serials' AND table_type = 'BASE TABLE'"""
    ).fetchone()
    if row and row[0]:
        raise ConfigError(
            f"the state store {path} was written by an earlier version of cmi (a 'serials' "
            "table) that this version cannot read: start a new state store with --state"
        )


def not_a_store(err: duckdb.Error, path: Path) -> ConfigError | None:
    """The usage error for a `--state` that names a file DuckDB cannot open as a database
    (a typo, another file), or None for any other failure (§1: exit 2, saying what to do)."""
    if "not a valid duckdb database file" not in str(err).lower():
        return None
    return ConfigError(
        f"{path} is not a cmi state store (not a DuckDB database): check --state (or "
        "CMI_STATE); a path where no file is yet starts a new store"
    )


def _locked(path: Path) -> StateLocked:
    return StateLocked(
        f"another run holds the lock of the state store {path} (or cmi validate or cmi "
        "status is reading it); wait for it to finish (only one run at a time may use a "
        "state store)"
    )


def open_store(path: Path, *, read_only: bool = False) -> Store:
    """Lock and open the state store at `path`, creating it when missing.

    The lock is taken beside the store's resolved path (§8): a symlink to the store or
    to its folder, or another spelling of the path, is the same store and the same lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    real = path.resolve()
    lock = lock_path(path).open("a+")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
        lock.close()
        raise _locked(path) from err
    lock.truncate(0)  # a note left by an earlier holder is not about this one
    con: duckdb.DuckDBPyConnection | None = None
    try:
        try:
            con = duckdb.connect(str(real), read_only=read_only)
        except duckdb.IOException as err:
            # DuckDB's own lock, held by a process that did not take ours (an older cmi,
            # the duckdb shell): the store is in use all the same
            if "conflicting lock" in str(err).lower():
                raise _locked(path) from err
            usage = not_a_store(err, path)
            if usage is not None:
                raise usage from err
            raise
        configure(con, path.parent / (path.name + ".tmp"))
        _check_format(con, path)
        if not read_only:
            create_schema(con)
    except BaseException:
        if con is not None:
            con.close()
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        lock.close()
        raise
    return Store(path, con, lock)


def discard_torn_pool_rows(con: duckdb.DuckDBPyConnection) -> int:
    """Take out pool rows that no committed arrival accounts for; return how many.

    A product's serials are numbered 0 .. size-1 and every arrival writes its pool rows
    and the product's new size in one transaction.  A run killed while DuckDB commits a
    large pool load has been seen (DuckDB 1.5) to come back with the load's pool rows
    but not the rest of its transaction (the size, the runs, the file marked
    processed).  Those rows belong to no arrival: the file was not applied and is
    applied again by the next run, so they are removed first.  The check is two
    counts; the repair runs only when they differ.
    """
    row = con.execute(
        """SELECT (SELECT count(*) FROM pool),
                  (SELECT coalesce(sum(size), 0) FROM serial_products)"""
    ).fetchone()
    if row is None or int(row[0]) <= int(row[1]):
        return 0
    with transaction(con):
        extra = con.execute(
            """DELETE FROM pool WHERE NOT EXISTS (
                   SELECT 1 FROM serial_products s WHERE s.pid = pool.pid AND pool.pseq < s.size)"""
        ).fetchone()
    return int(extra[0]) if extra else 0


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One atomic unit of state change: commit on success, roll back on any error."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        with contextlib.suppress(Exception):
            con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")
