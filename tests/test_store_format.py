"""The state store's format (connectors/ddl.py STORE_FORMAT): a store written by an
earlier cmi is migrated when opened."""

from __future__ import annotations

from pathlib import Path

import duckdb

from connectors.ddl import POOL_COMPRESSED
from connectors.store import open_store

OLD_POOL = """CREATE TABLE pool (
    pid INTEGER NOT NULL USING COMPRESSION rle,
    pseq BIGINT NOT NULL USING COMPRESSION bitpacking,
    serial VARCHAR NOT NULL USING COMPRESSION uncompressed)"""
ROWS = 60_000  # half a row group: enough for DuckDB to weigh FSST against plain strings
SERIALS = f"""SELECT 3 AS pid, i AS pseq, lpad(((i * 2654435761 + 7919) % 1000000000000)::VARCHAR,
    12, '0') AS serial FROM range({ROWS}) t(i)"""


def _serial_compression(path: Path) -> set[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            str(r[0])
            for r in con.execute(
                """SELECT DISTINCT compression FROM pragma_storage_info('pool')
                   WHERE column_name = 'serial' AND segment_type = 'VARCHAR'"""
            ).fetchall()
        }
    finally:
        con.close()


def _old_store(path: Path) -> None:
    """A store as STORE_FORMAT 1 left it: its serials stored uncompressed."""
    open_store(path).close()
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE pool")
    con.execute(OLD_POOL)
    con.execute("DELETE FROM meta WHERE key = ?", [POOL_COMPRESSED])
    con.execute(f"INSERT INTO pool {SERIALS}")
    con.close()


def test_a_store_with_uncompressed_serials_gets_them_compressed_when_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cmi.duckdb"
    _old_store(path)
    assert _serial_compression(path) == {"Uncompressed"}
    store = open_store(path)
    kept = store.con.execute("SELECT pid, pseq, serial FROM pool").fetchall()
    expected = duckdb.connect().execute(SERIALS).fetchall()
    assert kept == expected  # every serial, in arrival order
    store.close()
    assert "Uncompressed" not in _serial_compression(path)
    # once: a second open finds the mark and leaves the pool as it is
    store = open_store(path)
    assert store.con.execute("SELECT value FROM meta WHERE key = ?", [POOL_COMPRESSED]).fetchone()
    assert store.con.execute("SELECT count(*) FROM pool").fetchone() == (ROWS,)
    store.close()


def test_a_new_store_compresses_its_serials(tmp_path: Path) -> None:
    path = tmp_path / "cmi.duckdb"
    store = open_store(path)
    store.con.execute(f"INSERT INTO pool {SERIALS}")
    store.close()
    assert "Uncompressed" not in _serial_compression(path)


def test_a_copy_left_by_a_migration_stopped_halfway_is_made_again(tmp_path: Path) -> None:
    path = tmp_path / "cmi.duckdb"
    _old_store(path)
    con = duckdb.connect(str(path))  # the copy of a run killed while it copied
    con.execute(OLD_POOL.replace("pool (", "pool_compressed_copy ("))
    con.execute(f"INSERT INTO pool_compressed_copy {SERIALS} LIMIT 10")
    con.close()
    store = open_store(path)
    assert store.con.execute("SELECT count(*) FROM pool").fetchone() == (ROWS,)
    tables = store.con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'pool%'"
    )
    assert sorted(r[0] for r in tables.fetchall()) == ["pool", "pool_loads"]
    store.close()
    assert "Uncompressed" not in _serial_compression(path)
