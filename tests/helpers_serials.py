"""Shared helpers for the serial-side tests: file rows, a seeded in-memory store, a run context."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import duckdb
import polars as pl

from connectors.store import memory_connection
from schemas.base import validate_rows
from transforms import serial_runs as sr
from transforms.codes import gs1_check_digit
from transforms.context import Config, RunContext, SerialsConfig
from transforms.rejects import LINE
from transforms.serials import insert_serials, load_runs, outbox_contents, save_runs

AS_OF = dt.datetime(2024, 5, 17, 14, 30, 5)
RUN_ID = "20240517T143005"


def gtin(body: str) -> str:
    """A valid GTIN-14 from a 13-digit body (the check digit is computed)."""
    body = body.zfill(13)
    return body + gs1_check_digit(body)


DEMO = "11223344556675"  # the serial guide's demo product, with its valid check digit
PROD_A = gtin("1")
PROD_B = gtin("2")


def rows(**columns: Any) -> pl.DataFrame:
    """A parsed inbox frame: string columns plus `_line` (first data row = line 2).

    Scalars are broadcast to the length of the list columns.
    """
    lengths = {len(v) for v in columns.values() if isinstance(v, list | tuple)}
    n = lengths.pop() if lengths else 1
    assert not lengths, "all list columns must have the same length"
    data: dict[str, list[str | None]] = {}
    for name, value in columns.items():
        cells = list(value) if isinstance(value, list | tuple) else [value] * n
        data[name] = [None if c is None else str(c) for c in cells]
    frame = pl.DataFrame(data, schema={name: pl.String for name in data})
    return frame.with_columns(pl.int_range(2, n + 2, dtype=pl.Int64).alias(LINE))


def valid_rows(model: Any, frame: pl.DataFrame) -> pl.DataFrame:
    """The rows of `frame` that pass `model` (asserting that none is rejected)."""
    good, rejects = validate_rows(model, frame)
    assert rejects.height == 0, rejects.to_dicts()
    return good


def make_ctx(
    *,
    as_of: dt.datetime = AS_OF,
    run_id: str = RUN_ID,
    source_file: str = "test.csv",
    serials: SerialsConfig | None = None,
) -> RunContext:
    return RunContext(run_id, as_of, Config(serials=serials or SerialsConfig()), source_file)


def seed(
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    products: Iterable[str] = (),
    cmos: Mapping[str, Iterable[str]] | None = None,
    names: Mapping[str, str] | None = None,
    partners: Iterable[str] = (),
    pool: Mapping[str, int | Iterable[str]] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Fill a store directly: products, CMOs (id -> produceable products), active partners, pool.

    `pool` maps a product to a count (serials `S00001`, … in arrival order) or to
    explicit serials.  Serials get arrival numbers after every serial already there.
    """
    con = con if con is not None else memory_connection()
    for code in products:
        con.execute("INSERT INTO products VALUES (?, ?, 'EA')", [code, f"Product {code}"])
    partner_ids = set(partners)
    for cmo_id, produceable in (cmos or {}).items():
        status = "active" if cmo_id in partner_ids else "none"
        name = (names or {}).get(cmo_id, f"CMO {cmo_id}")
        con.execute(
            """INSERT INTO cmos (cmo_id, cmo_name, city, country, partnership_status)
               VALUES (?, ?, 'Basel', 'CH', ?)""",
            [cmo_id, name, status],
        )
        for pos, code in enumerate(produceable):
            con.execute("INSERT INTO cmo_products VALUES (?, ?, ?)", [cmo_id, code, pos])
    for code, serials in (pool or {}).items():
        values = (
            [f"S{i:05d}" for i in range(1, serials + 1)]
            if isinstance(serials, int)
            else list(serials)
        )
        frame = pl.DataFrame(
            {"product_code": [code] * len(values), "serial": values},
            schema={"product_code": pl.String, "serial": pl.String},
        )
        insert_serials(con, frame, "pool", RunContext(RUN_ID, AS_OF))
    return con


def serial_rows(con: duckdb.DuckDBPyConnection, where: str = "TRUE", order: str = "sid") -> list:
    """(serial, cmo_id, export_count, request_id) of the serials matching `where`."""
    return con.execute(
        f"SELECT serial, cmo_id, export_count, request_id FROM serials WHERE {where} ORDER BY {order}"
    ).fetchall()


def count(con: duckdb.DuckDBPyConnection, where: str, params: list[Any] | None = None) -> int:
    row = con.execute(f"SELECT count(*) FROM serials WHERE {where}", params or []).fetchone()
    return int(row[0]) if row else 0


def set_status(con: duckdb.DuckDBPyConnection, where: str, **values: Any) -> int:
    """Set status columns (e.g. `shipped=True`) of the serials matching `where` (over the
    `serials` view), as a rule would: through the runs.  Returns how many serials."""
    hit = con.execute(f"SELECT pid, pseq FROM serials WHERE {where}").pl()
    if hit.height == 0:
        return 0
    patches = sr.ranges_of(hit).with_columns([pl.lit(v).alias(k) for k, v in values.items()])
    pids = hit.get_column("pid").unique().to_list()
    save_runs(con, pids, sr.overlay(load_runs(con, pids), patches, list(values)))
    return hit.height


def register_outbox_items(con: duckdb.DuckDBPyConnection) -> None:
    """A view `outbox_items` (file_id, ord, product_code, serial) of every recorded file."""
    ids = [r[0] for r in con.execute("SELECT file_id FROM outbox_files").fetchall()]
    contents = outbox_contents(con, ids)
    items = (
        pl.concat(
            [
                frame.select(
                    pl.lit(fid, pl.Int64).alias("file_id"),
                    pl.int_range(1, pl.len() + 1).alias("ord"),
                    "product_code",
                    "serial",
                )
                for fid, frame in contents.items()
            ],
        )
        if contents
        else pl.DataFrame(
            schema={
                "file_id": pl.Int64,
                "ord": pl.Int64,
                "product_code": pl.String,
                "serial": pl.String,
            }
        )
    )
    con.register("outbox_items", items)


def add_sgtins(con: duckdb.DuckDBPyConnection, uris: list[str], holder: str | None = "A") -> None:
    """Put the serials of these SGTIN URIs in the pool, assigned to `holder` (None:
    available) — the state a shipping test starts from."""
    from transforms.epc import parse_epc

    epcs = [parse_epc(uri) for uri in uris]
    frame = pl.DataFrame(
        {"product_code": [e.product_code for e in epcs], "serial": [e.serial for e in epcs]},
        schema={"product_code": pl.String, "serial": pl.String},
    )
    insert_serials(con, frame, "pool", RunContext(RUN_ID, AS_OF))
    if holder is not None:
        keys = ", ".join(f"('{e.product_code}', '{e.serial}')" for e in epcs)
        set_status(con, f"(product_code, serial) IN ({keys})", cmo_id=holder, assign_seq=1)
