"""The state store's format (connectors/ddl.py STORE_FORMAT): a store written by an
earlier cmi is migrated when opened; how the pool stores a serial (a number where the
serial is the plain decimal form of one, else its text)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.store import open_store
from transforms.codes import (
    GS1_CHARSET_82,
    serial_num,
    serial_num_sql,
    serial_parts,
    serial_txt_sql,
)

# the pool of STORE_FORMAT 1 (serials uncompressed) and 2 (FSST): one string column
OLD_POOLS = {
    1: """CREATE TABLE pool (
        pid INTEGER NOT NULL USING COMPRESSION rle,
        pseq BIGINT NOT NULL USING COMPRESSION bitpacking,
        serial VARCHAR NOT NULL USING COMPRESSION uncompressed)""",
    2: """CREATE TABLE pool (
        pid INTEGER NOT NULL USING COMPRESSION rle,
        pseq BIGINT NOT NULL USING COMPRESSION bitpacking,
        serial VARCHAR NOT NULL USING COMPRESSION fsst)""",
}
ROWS = 60_000  # half a row group: enough for DuckDB to weigh FSST against plain strings
# numbers (some with leading zeros: text), and every seventh an alphanumeric serial
SERIALS = f"""SELECT 3 AS pid, i AS pseq,
    CASE WHEN i % 7 = 0 THEN 'AB' || i::VARCHAR
         ELSE lpad(((i * 2654435761 + 7919) % 1000000000000)::VARCHAR, 12, '0') END AS serial
    FROM range({ROWS}) t(i)"""
READ = "SELECT pid, pseq, coalesce(txt, num::VARCHAR) FROM pool ORDER BY pid, pseq"
PLAIN_NUMBER = re.compile(r"0|[1-9][0-9]{0,17}")


def _compression(path: Path, column: str) -> set[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            str(r[0])
            for r in con.execute(
                """SELECT DISTINCT compression FROM pragma_storage_info('pool')
                   WHERE column_name = ? AND segment_type = 'VARCHAR'""",
                [column],
            ).fetchall()
        }
    finally:
        con.close()


def _old_store(path: Path, fmt: int) -> None:
    """A store as STORE_FORMAT `fmt` left it: each serial one string."""
    open_store(path).close()
    con = duckdb.connect(str(path))
    con.execute("DROP VIEW serials")
    con.execute("DROP TABLE pool")
    con.execute(OLD_POOLS[fmt])
    con.execute(f"INSERT INTO pool {SERIALS}")
    con.close()


@pytest.mark.parametrize("fmt", [1, 2])
def test_an_older_store_gets_its_serials_stored_as_numbers_or_text_when_opened(
    tmp_path: Path, fmt: int
) -> None:
    path = tmp_path / "cmi.duckdb"
    _old_store(path, fmt)
    store = open_store(path)
    kept = store.con.execute(READ).fetchall()
    assert kept == duckdb.connect().execute(SERIALS).fetchall()  # every serial, in order
    split = store.con.execute(
        "SELECT count(num), count(txt), count(*) FILTER (WHERE (num IS NULL) = (txt IS NULL)) "
        "FROM pool"
    ).fetchone()
    texts = sum(1 for _, _, s in kept if not PLAIN_NUMBER.fullmatch(s))
    assert split == (ROWS - texts, texts, 0)  # exactly one of the two, as the rule says
    assert texts > ROWS // 7  # the alphanumerics and the numbers with a leading zero
    store.close()
    assert "Uncompressed" not in _compression(path, "txt")
    store = open_store(path)  # once: a second open leaves the pool as it is
    assert store.con.execute(READ).fetchall() == kept
    store.close()


def test_a_copy_left_by_a_migration_stopped_halfway_is_made_again(tmp_path: Path) -> None:
    path = tmp_path / "cmi.duckdb"
    _old_store(path, 2)
    con = duckdb.connect(str(path))  # the copy of a run killed while it copied
    con.execute("CREATE TABLE pool_format_copy (pid INTEGER, pseq BIGINT, num BIGINT, txt VARCHAR)")
    con.execute("INSERT INTO pool_format_copy VALUES (3, 0, 1, NULL)")
    con.execute("CREATE TABLE pool_compressed_copy (pid INTEGER)")  # format 2's leftover
    con.close()
    store = open_store(path)
    assert store.con.execute(READ).fetchall() == duckdb.connect().execute(SERIALS).fetchall()
    tables = store.con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'pool%'"
    )
    assert sorted(r[0] for r in tables.fetchall()) == ["pool", "pool_loads"]
    store.close()


def test_a_new_store_keeps_numbers_as_numbers_and_compresses_the_text(tmp_path: Path) -> None:
    from transforms.context import RunContext
    from transforms.serials import insert_serials

    path = tmp_path / "cmi.duckdb"
    store = open_store(path)
    serials = duckdb.connect().execute(f"SELECT serial FROM ({SERIALS})").pl()
    store.con.execute("INSERT INTO products VALUES ('P', 'P', 'EA')")
    ctx = RunContext("r1", __import__("datetime").datetime(2026, 1, 1)).for_file("p.csv")
    insert_serials(store.con, serials.with_columns(pl.lit("P").alias("product_code")), "pool", ctx)
    assert [r[0] for r in store.con.execute(
        "SELECT coalesce(txt, num::VARCHAR) FROM pool ORDER BY pseq"
    ).fetchall()] == serials.get_column("serial").to_list()  # fmt: skip
    numbers = store.con.execute("SELECT count(num) FROM pool").fetchone()
    assert numbers == (sum(1 for s in serials.get_column("serial") if PLAIN_NUMBER.fullmatch(s)),)
    store.close()
    assert "Uncompressed" not in _compression(path, "txt")


# serials as CMOs write them (GS1 charset 82, 1-20 characters), and the forms a number
# parser might read: signs, leading zeros, spaces, exponents, other scripts' digits
_DIGITS = st.text("0123456789", min_size=1, max_size=20)
_ODD = st.builds(
    lambda pre, digits, post: pre + digits + post,
    st.sampled_from(["", "", "+", "-", "0", "00", " ", "\t", "١", "０"]),
    _DIGITS,
    st.sampled_from(["", "", " ", "e3", ".0", "_1", "\n", "١"]),
)
_SERIALS = st.one_of(_DIGITS, _ODD, st.text(GS1_CHARSET_82, min_size=1, max_size=20))


@settings(max_examples=300, deadline=None)
@given(st.lists(_SERIALS, min_size=1, max_size=40))
def test_a_serial_is_stored_as_a_number_exactly_when_it_is_the_plain_decimal_form(
    serials: list[str],
) -> None:
    """Polars (the loads) and SQL (the EPCIS side, the migration) split a serial alike, and
    the pair reads back as the same string: the rule the pool's joins rely on."""
    frame = pl.DataFrame({"serial": serials}, schema={"serial": pl.String})
    parts = serial_parts(frame)
    expected = [int(s) if PLAIN_NUMBER.fullmatch(s) else None for s in serials]
    assert parts.get_column("num").to_list() == expected
    assert frame.select(serial_num(pl.col("serial"))).to_series().to_list() == expected
    con = duckdb.connect()
    con.register("f", frame)
    sql = con.execute(
        f"SELECT {serial_num_sql('serial')}, {serial_txt_sql('serial')} FROM f"
    ).fetchall()
    assert sql == list(zip(expected, parts.get_column("txt").to_list(), strict=True))
    con.register("p", parts)
    back = con.execute("SELECT coalesce(txt, num::VARCHAR) FROM p").fetchall()
    assert [r[0] for r in back] == serials


def test_a_read_only_view_of_an_older_store_reads_its_serials_and_leaves_it_as_it_is(
    tmp_path: Path,
) -> None:
    """`cmi validate` / `cmi status` open the store read-only behind an in-memory overlay: an
    older store's pool is split in the overlay, the file keeps its format until a run."""
    from connectors.state_view import open_state_view

    path = tmp_path / "cmi.duckdb"
    _old_store(path, 2)
    store, _view = open_state_view(path)
    try:
        assert store.con.execute(READ).fetchall() == duckdb.connect().execute(SERIALS).fetchall()
        assert store.con.execute("SELECT count(num) > 0, count(txt) > 0 FROM pool").fetchone() == (
            True,
            True,
        )
    finally:
        store.close()
    con = duckdb.connect(str(path), read_only=True)
    try:
        columns = [r[0] for r in con.execute("DESCRIBE pool").fetchall()]
    finally:
        con.close()
    assert columns == ["pid", "pseq", "serial"]
