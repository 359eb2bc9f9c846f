"""Serial rules: pool, in-house generation, assignment, returns, exports, partner requests (SPEC §5).

State: `pool` holds each serial once as (product index `pid`, arrival number
`pseq`, serial) and never changes; the status of every serial lives in
`serial_runs`, run-length encoded (`transforms.serial_runs`).  A file's rules load
the runs of the products it touches (a few rows), change them with Polars and
write them back.  Only the pool insert and the contents of export files touch one
row per serial, and both are set-based.  The only Python loops run over the rows
of a request file (hundreds), never over serials.

The counts of §5, as predicates over runs:
- available: `cmo_id IS NULL`
- assigned: `cmo_id = c AND request_id IS NULL`
- assigned not exported: assigned, `export_count = 0`, not reported commissioned,
  shipped or decommissioned (`USED`)
- requested: `cmo_id = c AND request_id IS NOT NULL`

A serial the CMO reported used (§6) is never exported, served or returned again.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import polars as pl

from transforms import serial_runs as sr
from transforms.codes import (
    bool_expr,
    distinct_by_runs,
    same_serial_sql,
    serial_parts,
    serial_sql,
)
from transforms.context import FileResult, RunContext
from transforms.rejects import LINE, REJECT_SCHEMA, RejectCollector, concat_rejects, reject_where
from transforms.state import appended_to, register, take_counter

CHARSETS = {"numeric": "0123456789", "alphanumeric": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
DUPLICATE_SUFFIX = "_CanContainDuplicateSerials"
MAX_GENERATE_PER_ROW = 10_000_000  # one row's serials are drawn in memory

ASSIGNED = pl.col("cmo_id").is_not_null() & pl.col("request_id").is_null()
USED = pl.col("commissioned") | pl.col("shipped") | pl.col("decommissioned")
ASSIGNED_NOT_EXPORTED = ASSIGNED & (pl.col("export_count") == 0) & ~USED


# --------------------------------------------------------------------------- lookups


def _products(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT product_code FROM products").fetchall()}


def _cmo_states(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[bool, str]]:
    """cmo_id -> (deleted, partnership_status)."""
    return {
        r[0]: (bool(r[1]), r[2] or "none")
        for r in con.execute("SELECT cmo_id, deleted, partnership_status FROM cmos").fetchall()
    }


def _produceable(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    return {
        (r[0], r[1])
        for r in con.execute("SELECT cmo_id, product_code FROM cmo_products").fetchall()
    }


UNKNOWN_PRODUCT = " does not exist: load it in a products file first"


def _reject_unknown_product(rejects: RejectCollector, line: int, product: str) -> None:
    rejects.add(
        line, "product_code", product, "unknown_product", f"product {product}{UNKNOWN_PRODUCT}"
    )


def _check_cmo_product(
    rejects: RejectCollector,
    row: dict[str, Any],
    cmos: dict[str, tuple[bool, str]],
    products: set[str],
    produceable: set[tuple[str, str]] | None,
) -> bool:
    """The CMO exists and is not deleted, the product exists (and is produceable)."""
    line, cmo_id, product = row[LINE], row["cmo_id"], row["product_code"]
    state = cmos.get(cmo_id)
    if state is None:
        rejects.add(
            line,
            "cmo_id",
            cmo_id,
            "unknown_cmo",
            f"CMO '{cmo_id}' does not exist: load it in a cmos file first",
        )
        return False
    if state[0]:
        rejects.add(
            line,
            "cmo_id",
            cmo_id,
            "cmo_deleted",
            f"CMO '{cmo_id}' is deleted and can no longer receive serials",
        )
        return False
    if product not in products:
        _reject_unknown_product(rejects, line, product)
        return False
    if produceable is not None and (cmo_id, product) not in produceable:
        rejects.add(
            line, "product_code", product, "not_produceable",
            f"product {product} is not among the produceable products of CMO '{cmo_id}': add it "
            "to produceable_products in a cmos file first",
        )  # fmt: skip
        return False
    return True


# --------------------------------------------------------------------------- the serial state


def product_ids(
    con: duckdb.DuckDBPyConnection, codes: Iterable[str] = (), *, create: bool = False
) -> dict[str, int]:
    """product_code -> pid of every product that has (or, `create`, is about to get) serials."""
    known = {
        str(r[0]): int(r[1])
        for r in con.execute("SELECT product_code, pid FROM serial_products").fetchall()
    }
    missing = sorted(set(codes) - known.keys()) if create else []
    if missing:
        first = max(known.values(), default=0) + 1
        rows = [(code, first + i) for i, code in enumerate(missing)]
        con.executemany("INSERT INTO serial_products VALUES (?, ?, 0)", rows)
        known.update(dict(rows))
    return known


def load_runs(con: duckdb.DuckDBPyConnection, pids: Iterable[int]) -> pl.DataFrame:
    """The runs of these products."""
    wanted = sorted(set(pids))
    if not wanted:
        return sr.empty_runs()
    frame = con.execute(
        f"""SELECT {", ".join(sr.COLUMNS)} FROM serial_runs
            WHERE pid IN (SELECT unnest(?::INTEGER[])) ORDER BY pid, lo""",
        [wanted],
    ).pl()
    return frame.cast(sr.RUN_SCHEMA) if frame.height else sr.empty_runs()  # type: ignore[arg-type]


def save_runs(con: duckdb.DuckDBPyConnection, pids: Iterable[int], runs: pl.DataFrame) -> None:
    """Replace the runs of these products by `runs` (compressed)."""
    wanted = sorted(set(pids))
    if not wanted:
        return
    con.execute("DELETE FROM serial_runs WHERE pid IN (SELECT unnest(?::INTEGER[]))", [wanted])
    runs = sr.compress(runs)
    if runs.height:
        view = register(con, runs, "runs")
        con.execute(f"INSERT INTO serial_runs SELECT {', '.join(sr.COLUMNS)} FROM {view}")
        con.unregister(view)


def _covering(ranges: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """The fewest scans that read `ranges` (pid, lo, hi): ranges that touch or overlap
    are read as one.  Returns the scans (pid, lo, hi) and, for every serial of
    `ranges` in their order, its position in the scans' serials laid end to end."""
    reach = pl.col("hi").cum_max().shift().over("pid")  # furthest end before, in the product
    tagged = (
        ranges.select(
            pl.col("pid").cast(pl.Int64), pl.col("lo").cast(pl.Int64), pl.col("hi").cast(pl.Int64)
        )
        .with_row_index("k")
        .sort("pid", "lo")
        .with_columns((reach.is_null() | (pl.col("lo") > reach)).cum_sum().alias("scan"))
    )
    scans = (
        tagged.group_by("scan", maintain_order=True)
        .agg(pl.col("pid").first(), pl.col("lo").min(), pl.col("hi").max())
        .with_columns((pl.col("hi") - pl.col("lo")).cum_sum().shift(fill_value=0).alias("at"))
    )
    placed = tagged.join(scans.select("scan", pl.col("lo").alias("scan_lo"), "at"), on="scan").sort(
        "k"
    )
    offsets = placed.select(pl.col("at") + pl.col("lo") - pl.col("scan_lo")).to_series().to_numpy()
    lengths = placed.select(pl.col("hi") - pl.col("lo")).to_series().to_numpy()
    # each range's serials: its offset + 0 .. length-1, the ranges laid end to end
    before = np.cumsum(lengths) - lengths
    positions = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(offsets - before, lengths)
    return scans.select("pid", "lo", "hi"), positions


_RANGES_PER_QUERY = 256


def pool_serials(con: duckdb.DuckDBPyConnection, ranges: pl.DataFrame) -> pl.Series:
    """The serials of `ranges` (pid, lo, hi), in range order then arrival order.

    Ranges that touch or overlap are read by one scan (a night's exports mostly take
    consecutive serials); each scan is a filtered scan of `pool`, so DuckDB skips the
    storage segments outside it (a product's serials are stored in arrival order); a
    few hundred scans go in one statement.
    """
    if sr.count(ranges) == 0:
        return pl.Series("serial", [], pl.String)
    scans, positions = _covering(ranges)
    parts = []
    bounds = scans.rows()
    for start in range(0, len(bounds), _RANGES_PER_QUERY):
        chunk = bounds[start : start + _RANGES_PER_QUERY]
        union = " UNION ALL ".join(
            f"SELECT {k}::INTEGER AS k, pseq, {serial_sql('pool')} AS serial FROM pool "
            f"WHERE pid = {pid} AND pseq >= {lo} AND pseq < {hi}"
            for k, (pid, lo, hi) in enumerate(chunk)
        )
        part = con.execute(f"SELECT k, pseq, serial FROM ({union})").pl()
        order = part.select((pl.col("k").cast(pl.Int64) * (1 << 40) + pl.col("pseq")).alias("o"))
        if not order.to_series().is_sorted():  # a scan usually comes back in storage order
            part = part.sort("k", "pseq")
        parts.append(part.get_column("serial"))
    read = pl.concat(parts)
    if read.len() != sr.count(scans):
        raise RuntimeError(
            f"state store is inconsistent: {sr.count(scans) - read.len()} serial(s) of a range "
            "are missing from the pool"
        )
    return read.gather(positions)


def outbox_rows(con: duckdb.DuckDBPyConnection, file_ids: Sequence[int]) -> pl.DataFrame:
    """The rows of recorded export files / partner answers, all in one frame:
    (file_id, product_code, serial), by file_id, each file's rows in file order."""
    ranges = con.execute(
        """SELECT r.file_id, r.ord, r.pid, r.lo, r.hi, f.product_code
           FROM outbox_ranges r JOIN outbox_files f ON f.file_id = r.file_id
           WHERE r.file_id IN (SELECT unnest(?::BIGINT[])) ORDER BY r.file_id, r.ord""",
        [sorted(set(file_ids))],
    ).pl()
    serial = pool_serials(con, ranges)
    # each range's file and product code, repeated over its serials (a gather: no copies)
    which = pl.int_range(ranges.height, dtype=pl.UInt32, eager=True).repeat_by(
        (ranges.get_column("hi") - ranges.get_column("lo")).cast(pl.UInt32)
    )
    at = which.explode() if which.len() else pl.Series(dtype=pl.UInt32)
    return pl.DataFrame(
        [
            ranges.get_column("file_id").cast(pl.Int64).gather(at),
            ranges.get_column("product_code").cast(pl.String).gather(at),
            serial,
        ]
    )


def outbox_contents(
    con: duckdb.DuckDBPyConnection, file_ids: Sequence[int]
) -> dict[int, pl.DataFrame]:
    """The rows of recorded export files / partner answers: file_id -> (product_code,
    serial) in file order (every asked file, empty ones too)."""
    rows = outbox_rows(con, file_ids)
    files = {
        int(key[0]): part.drop("file_id")  # type: ignore[call-overload]
        for key, part in rows.partition_by("file_id", as_dict=True, maintain_order=True).items()
    }
    empty = pl.DataFrame(schema={"product_code": pl.String, "serial": pl.String})
    return {int(fid): files.get(int(fid), empty) for fid in file_ids}


def insert_serials(
    con: duckdb.DuckDBPyConnection, serials: pl.DataFrame, source: str, ctx: RunContext
) -> None:
    """Append new serials (product_code, serial) to the pool in this order (FIFO): each
    product's next arrival numbers, available."""
    if serials.height == 0:
        return
    codes = distinct_by_runs(serials.get_column("product_code")).to_list()
    pids = product_ids(con, codes, create=True)
    touched = {c: pids[c] for c in codes}
    sizes = {
        int(r[0]): int(r[1])
        for r in con.execute(
            "SELECT pid, size FROM serial_products WHERE pid IN (SELECT unnest(?::INTEGER[]))",
            [sorted(touched.values())],
        ).fetchall()
    }
    frame = serial_parts(_numbered(serials, touched, sizes))
    view = register(con, frame, "new_serials", scan_only=True)
    con.execute(f"INSERT INTO {appended_to(con, 'pool')} SELECT pid, pseq, num, txt FROM {view}")
    con.unregister(view)
    added = frame.group_by("pid").agg(pl.len().alias("n"))
    ranges = added.select(
        "pid",
        pl.col("pid").replace_strict(sizes, return_dtype=pl.Int64).alias("lo"),
        (pl.col("pid").replace_strict(sizes, return_dtype=pl.Int64) + pl.col("n")).alias("hi"),
    )
    runs = load_runs(con, touched.values())
    fresh = ranges.select(sr.available_runs(pl.col("pid"), pl.col("lo"), pl.col("hi")))
    save_runs(con, touched.values(), pl.concat([runs, fresh]))
    view = register(
        con,
        ranges.with_columns(
            pl.lit(source).alias("source"),
            pl.lit(ctx.run_id).alias("run_id"),
            pl.lit(ctx.source_file).alias("file"),
        ),
        "loads",
    )
    con.execute(
        f"""UPDATE serial_products SET size = l.hi FROM {view} l WHERE serial_products.pid = l.pid"""
    )
    con.execute(f"INSERT INTO pool_loads SELECT pid, lo, hi, source, run_id, file FROM {view}")
    con.unregister(view)


def _numbered(serials: pl.DataFrame, pids: dict[str, int], sizes: dict[int, int]) -> pl.DataFrame:
    """(pid, pseq, serial): each product's next arrival numbers, in file order."""
    blocks = serials.select(pl.col("product_code").rle()).unnest("product_code")
    if blocks.height <= 1000:  # products come in blocks (the usual file): number per block
        pid_parts, seq_parts = [], []
        nxt = dict(sizes)
        for n, code in blocks.iter_rows():
            pid = pids[code]
            pid_parts.append(pl.repeat(pid, n, dtype=pl.Int32, eager=True))
            seq_parts.append(pl.int_range(nxt[pid], nxt[pid] + n, dtype=pl.Int64, eager=True))
            nxt[pid] += n
        # one piece per column (the reader's hundred pieces of serials joined: a copy of
        # their views, not of their text), so the hand-over to DuckDB copies nothing
        return pl.DataFrame(
            [
                pl.concat(pid_parts, rechunk=True).alias("pid"),
                pl.concat(seq_parts, rechunk=True).alias("pseq"),
                serials.get_column("serial").rechunk(),
            ]
        )
    pid_of = pl.col("product_code").replace_strict(pids, return_dtype=pl.Int32)
    base = pid_of.replace_strict(sizes, return_dtype=pl.Int64)
    return serials.select(
        pid_of.alias("pid"),
        (pl.int_range(pl.len(), dtype=pl.Int64).over(pid_of) + base).alias("pseq"),
        "serial",
    )


def _runs_with_codes(
    con: duckdb.DuckDBPyConnection, codes: Iterable[str]
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The runs of these products (those without serials have none) and their pids."""
    pids = product_ids(con)
    wanted = {c: pids[c] for c in set(codes) if c in pids}
    return load_runs(con, wanted.values()), wanted


def available_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Serials in the pool (not assigned) per product."""
    return {
        str(r[0]): int(r[1])
        for r in con.execute(
            """SELECT sp.product_code, sum(r.hi - r.lo) FROM serial_runs r
               JOIN serial_products sp ON sp.pid = r.pid
               WHERE r.cmo_id IS NULL GROUP BY sp.product_code"""
        ).fetchall()
    }


@dataclass
class HolderCounts:
    assigned: int = 0
    assigned_not_exported: int = 0
    used: int = 0  # assigned and reported commissioned, shipped or decommissioned


def _file_cmos(rows: pl.DataFrame) -> list[str]:
    """The CMO ids a file's rows name (blank ones left out)."""
    return [c for c in rows.get_column("cmo_id").unique().to_list() if c is not None]


def holder_counts(
    con: duckdb.DuckDBPyConnection, cmo_ids: list[str]
) -> dict[tuple[str, str], HolderCounts]:
    """The §5 counts of every (CMO, product) these CMOs hold."""
    if not cmo_ids:
        return {}
    rows = con.execute(
        """SELECT r.cmo_id, sp.product_code, sum(r.hi - r.lo),
                  coalesce(sum(r.hi - r.lo) FILTER (
                      WHERE r.export_count = 0 AND NOT (r.commissioned OR r.shipped
                                                        OR r.decommissioned)), 0),
                  coalesce(sum(r.hi - r.lo) FILTER (
                      WHERE r.commissioned OR r.shipped OR r.decommissioned), 0)
           FROM serial_runs r JOIN serial_products sp ON sp.pid = r.pid
           WHERE r.request_id IS NULL AND r.cmo_id IN (SELECT unnest(?::VARCHAR[]))
           GROUP BY ALL""",
        [sorted(set(cmo_ids))],
    ).fetchall()
    return {(r[0], r[1]): HolderCounts(int(r[2]), int(r[3]), int(r[4])) for r in rows}


# --------------------------------------------------------------------------- pool §5.1


def apply_serial_pool(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """Add delivered serials to the pool in file order; a serial exists once per product, for ever."""
    rows = rows[[LINE, "product_code", "serial"]]  # (a select would copy the pieces)
    # Tens of millions of rows: look at the few distinct codes, filter (copy) only when
    # one is unknown.
    codes = distinct_by_runs(rows.get_column("product_code")).drop_nulls()
    missing = sorted(set(codes.to_list()) - _products(con))
    unknown = rows.filter(pl.col("product_code").is_in(missing)) if missing else rows.clear()
    rej_unknown = reject_where(
        unknown, pl.lit(True), column="product_code", rule="unknown_product",
        message=pl.lit("product ") + pl.col("product_code") + pl.lit(UNKNOWN_PRODUCT),
    )  # fmt: skip
    if unknown.height:
        rows = rows.filter(~pl.col("product_code").is_in(missing))
    rows, rej_repeat = _reject_repeats(rows)
    rows, rej_existing = _reject_existing(con, rows)
    insert_serials(con, rows.select("product_code", "serial"), "pool", ctx)
    return FileResult(
        rejects=concat_rejects(rej_unknown, rej_repeat, rej_existing), rows_applied=rows.height
    )


def _key_hash(frame: pl.DataFrame) -> pl.Series:
    """A 64-bit hash of (product_code, serial) per row; equal keys, equal hashes."""
    return frame.select(
        pl.col("serial").hash(seed=7).xor(pl.col("product_code").hash(seed=11))
    ).to_series()


def _reject_repeats(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A serial that repeats within the file: every occurrence after the first is rejected."""
    hashed = _key_hash(rows)
    if hashed.unique().len() == rows.height:  # no two rows share a hash: no repeat (usual)
        return rows, pl.DataFrame(schema=REJECT_SCHEMA)
    # only rows whose hash repeats can repeat: compare their strings
    suspects = rows.filter(hashed.is_duplicated())
    repeated = suspects.filter(~pl.struct("product_code", "serial").is_first_distinct())
    if repeated.height == 0:
        return rows, pl.DataFrame(schema=REJECT_SCHEMA)
    first = suspects.group_by("product_code", "serial").agg(pl.col(LINE).min().alias("first_line"))
    repeated = repeated.join(first, on=["product_code", "serial"], maintain_order="left")
    rejects = reject_where(
        repeated, pl.lit(True), column="serial", rule="duplicate_serial",
        message=pl.lit("serial '") + pl.col("serial") + pl.lit("' of product ")
        + pl.col("product_code") + pl.lit(" repeats line ") + pl.col("first_line").cast(pl.String)
        + pl.lit(" of this file: a serial exists once per product"),
    )  # fmt: skip
    return rows.join(repeated.select(LINE), on=LINE, how="anti", maintain_order="left"), rejects


def _reject_existing(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A serial the product already has (from any source, ever) is rejected."""
    filled = {
        str(r[0])
        for r in con.execute("SELECT product_code FROM serial_products WHERE size > 0").fetchall()
    }
    if not rows.height or not filled:  # no product has serials yet (a first load)
        return rows, pl.DataFrame(schema=REJECT_SCHEMA)
    codes = set(rows.get_column("product_code").unique().to_list())
    if not filled & codes:
        return rows, pl.DataFrame(schema=REJECT_SCHEMA)
    pids = {code: pid for code, pid in product_ids(con).items() if code in filled & codes}
    asked = rows.select(
        LINE,
        "product_code",
        pl.col("product_code")
        .replace_strict(pids, default=None, return_dtype=pl.Int32)
        .alias("pid"),
        "serial",
    ).filter(pl.col("pid").is_not_null())
    view = register(con, serial_parts(asked), "pool")
    existing = con.execute(
        f"""SELECT r.{LINE} AS {LINE}, r.product_code, {serial_sql("r")} AS serial FROM {view} r
            JOIN ({_pool_of(pids.values())}) p
            ON p.pid = r.pid AND {same_serial_sql("p", "r.num", "r.txt")}"""
    ).pl()
    con.unregister(view)
    rejects = reject_where(
        existing, pl.lit(True), column="serial", rule="serial_exists",
        message=pl.lit("serial '") + pl.col("serial") + pl.lit("' already exists for product ")
        + pl.col("product_code") + pl.lit(": a serial exists once per product, for ever"),
    )  # fmt: skip
    if existing.height:
        rows = rows.join(existing.select(LINE), on=LINE, how="anti", maintain_order="left")
    return rows, rejects


def _pool_of(pids: Iterable[int]) -> str:
    """SQL: the stored serials (pid, num, txt) of these products, one scan filtered by an
    IN list (DuckDB skips the blocks of other products by their min/max: a product's
    serials are a few of the store's, and a join on the whole pool would read every one).
    Not a UNION ALL of one scan per product: its planning grows with the products (1.9 s
    for 100, 25 s for 2,000) where the IN list stays flat."""
    listed = ", ".join(str(int(pid)) for pid in sorted(set(pids)))
    return f"SELECT pid, num, txt FROM pool WHERE pid IN ({listed or 'NULL'})"


# --------------------------------------------------------------------------- generation §5.2

RandomBytes = Callable[[int], bytes]


def random_serials(
    n: int, length: int, charset: str, random_bytes: RandomBytes = secrets.token_bytes
) -> list[str]:
    """`n` serials of `length` characters drawn uniformly from `charset` by a secure generator."""
    if n <= 0:
        return []
    size = len(charset)
    limit = 256 - (256 % size)  # rejection sampling keeps the draw uniform
    alphabet = np.frombuffer(charset.encode("ascii"), dtype=np.uint8)
    need = n * length
    picked = np.empty(0, dtype=np.uint8)
    while picked.size < need:
        raw = np.frombuffer(random_bytes(int((need - picked.size) * 1.1) + 16), dtype=np.uint8)
        picked = np.concatenate([picked, raw[raw < limit] % size])
    chars = alphabet[picked[:need]].reshape(n, length)
    return chars.view(f"S{length}").ravel().astype(str).tolist()


def serial_space(ctx: RunContext) -> int:
    s = ctx.config.serials
    return len(CHARSETS[s.generated_charset]) ** s.generated_length


def apply_serial_generate(
    con: duckdb.DuckDBPyConnection,
    rows: pl.DataFrame,
    ctx: RunContext,
    random_bytes: RandomBytes = secrets.token_bytes,
) -> FileResult:
    """Generate new random serials per row; reject a row that breaks the FMD randomness rule."""
    cfg = ctx.config.serials
    space = serial_space(ctx)
    products = _products(con)
    totals = {
        r[0]: int(r[1])
        for r in con.execute("SELECT product_code, size FROM serial_products").fetchall()
    }
    rejects = RejectCollector()
    applied = 0
    for row in rows.iter_rows(named=True):
        line, product, qty = row[LINE], row["product_code"], int(row["quantity"])
        if product not in products:
            _reject_unknown_product(rejects, line, product)
            continue
        if qty > MAX_GENERATE_PER_ROW:
            rejects.add(
                line, "quantity", row["quantity"], "quantity_too_large",
                f"at most {MAX_GENERATE_PER_ROW} serials can be generated by one row; split the "
                "quantity over several rows",
            )  # fmt: skip
            continue
        after = totals.get(product, 0) + qty
        if space < cfg.min_randomness_factor * after:
            most = max(space // cfg.min_randomness_factor - totals.get(product, 0), 0)
            rejects.add(
                line, "quantity", row["quantity"], "randomness",
                f"generating {qty} serials would give product {product} {after} serials in a space of "
                f"{space} ({cfg.generated_charset}, length {cfg.generated_length}): the space must stay "
                f"at least {cfg.min_randomness_factor} times the serial count (FMD); at most {most} "
                "more can be generated — use longer or alphanumeric serials",
            )  # fmt: skip
            continue
        _generate_unique(
            con,
            product,
            qty,
            cfg.generated_length,
            CHARSETS[cfg.generated_charset],
            random_bytes,
            ctx,
            space - totals.get(product, 0),
        )
        totals[product] = after
        applied += 1
    return FileResult(rejects=rejects.frame(), rows_applied=applied)


def _generate_unique(
    con: duckdb.DuckDBPyConnection,
    product: str,
    qty: int,
    length: int,
    charset: str,
    random_bytes: RandomBytes,
    ctx: RunContext,
    free: int,
) -> None:
    """Draw until `qty` serials are new for the product (collisions are redrawn).

    `free`: the values of the space the product does not hold yet.  Each round draws the
    serials still needed times (space / values still free), so that a row that fills
    most of a small space (a low `min_randomness_factor`) ends in a few rounds; drawing
    only what is missing took one round per new serial there (46,656 serials of 3
    characters: hours and 23 GB).  A round draws at most max(4 x missing, 10M)."""
    fresh = pl.DataFrame(schema={"serial": pl.String})
    space = len(charset) ** length
    while fresh.height < qty:
        need = qty - fresh.height
        draws = max(need, need * space // max(free - fresh.height, 1))
        draws = min(draws, max(4 * need, MAX_GENERATE_PER_ROW))
        draw = pl.DataFrame(
            {"serial": random_serials(draws, length, charset, random_bytes)},
            schema={"serial": pl.String},
        )
        draw = pl.concat([fresh, draw]).unique("serial", maintain_order=True)
        view = register(con, serial_parts(draw), "draw")
        pid = product_ids(con).get(product)
        taken = (
            con.execute(
                f"""SELECT {serial_sql("d")} AS serial FROM {view} d
                    JOIN ({_pool_of([pid])}) p ON {same_serial_sql("p", "d.num", "d.txt")}"""
            ).pl()
            if pid is not None
            else draw.clear()
        )
        con.unregister(view)
        fresh = draw.join(taken, on="serial", how="anti", maintain_order="left")
    insert_serials(
        con,
        fresh.head(qty)
        .with_columns(pl.lit(product).alias("product_code"))
        .select("product_code", "serial"),
        "generated",
        ctx,
    )


# --------------------------------------------------------------------------- assignment §5.3


def _slices(plan: list[dict[str, Any]], group: str, quantity: str = "quantity") -> pl.DataFrame:
    """Consecutive position ranges per group, in plan order: (group, k, start, end)."""
    frame = pl.DataFrame(
        {
            "g": [p[group] for p in plan],
            "k": [p["k"] for p in plan],
            "q": [p[quantity] for p in plan],
        },
        schema={"g": pl.String, "k": pl.Int64, "q": pl.Int64},
    )
    return frame.with_columns(
        (pl.col("q").cum_sum().over("g") - pl.col("q")).alias("start"),
        pl.col("q").cum_sum().over("g").alias("end"),
    )


def _group_key() -> pl.Expr:
    """`cmo_id|pid` — the (CMO, product) group of a run."""
    return pl.col("cmo_id") + pl.lit("|") + pl.col("pid").cast(pl.String)


def apply_assignments(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """Assign the oldest available serials, all or nothing per row, in file order."""
    cmos = _cmo_states(con)
    products = _products(con)
    produceable = _produceable(con)
    available = available_counts(con)
    rejects = RejectCollector()
    plan: list[dict[str, Any]] = []
    taken: dict[str, int] = {}
    for row in rows.iter_rows(named=True):
        if not _check_cmo_product(rejects, row, cmos, products, produceable):
            continue
        product, qty = row["product_code"], int(row["quantity"])
        left = available.get(product, 0) - taken.get(product, 0)
        if qty > left:
            rejects.add(
                row[LINE], "quantity", row["quantity"], "not_enough_available",
                f"cannot assign {qty} serials of product {product}: only {left} are available in the pool",
            )  # fmt: skip
            continue
        plan.append(
            {"k": len(plan), "cmo_id": row["cmo_id"], "product_code": product, "quantity": qty}
        )
        taken[product] = taken.get(product, 0) + qty
    if not plan:
        return FileResult(rejects=rejects.frame())
    runs, pids = _runs_with_codes(con, taken)
    base = take_counter(con, "assign_seq", sum(p["quantity"] for p in plan))
    slices = _slices([{**p, "g": str(pids[p["product_code"]])} for p in plan], "g")
    # every serial of the file gets the next assignment number, in file order
    firsts = slices.select("k", (pl.col("q").cum_sum() - pl.col("q") + base).alias("_seq0"))
    holders = pl.DataFrame(
        {"k": [p["k"] for p in plan], "_holder": [p["cmo_id"] for p in plan]},
        schema={"k": pl.Int64, "_holder": pl.String},
    )
    available_runs = (
        runs.filter(pl.col("cmo_id").is_null())
        .with_columns(pl.col("pid").cast(pl.String).alias("g"))
        .sort("pid", "lo")
    )
    pieces = (
        sr.take_slices(available_runs, slices, by="g").join(firsts, on="k").join(holders, on="k")
    )
    patches = pieces.select(
        "pid", "lo", "hi",
        pl.col("_holder").alias("cmo_id"),
        (pl.col("_seq0") + pl.col("ord")).alias("assign_seq"),
    )  # fmt: skip
    save_runs(con, pids.values(), sr.overlay(runs, patches, ["cmo_id", "assign_seq"]))
    return FileResult(rejects=rejects.frame(), rows_applied=len(plan))


# --------------------------------------------------------------------------- returns §5.6


def return_unexported(
    con: duckdb.DuckDBPyConnection, cmo_id: str, product_code: str | None, quantity: int | None
) -> int:
    """Return assigned-not-exported serials (most recently assigned first) to the pool.

    They keep their arrival number, so the pool's FIFO order is their original one.
    `product_code` None = every product; `quantity` None = all of them.
    """
    pids = product_ids(con)
    if product_code is None:
        held = con.execute(
            "SELECT DISTINCT pid FROM serial_runs WHERE cmo_id = ?", [cmo_id]
        ).fetchall()
        wanted = [int(r[0]) for r in held]
    else:
        wanted = [pids[product_code]] if product_code in pids else []
    runs = load_runs(con, wanted)
    candidates = runs.filter((pl.col("cmo_id") == cmo_id) & ASSIGNED_NOT_EXPORTED)
    held_n = sr.count(candidates)
    if quantity is not None:
        candidates = sr.take(
            candidates.sort("assign_seq", descending=True), quantity, from_end=True
        )
    patches = candidates.select("pid", "lo", "hi").with_columns(
        pl.lit(None, pl.String).alias("cmo_id"), pl.lit(None, pl.Int64).alias("assign_seq")
    )
    save_runs(con, wanted, sr.overlay(runs, patches, ["cmo_id", "assign_seq"]))
    return held_n if quantity is None else min(held_n, quantity)


def apply_serial_returns(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """Return a quantity (or ALL) of a CMO's assigned-not-exported serials to the pool (§5.6)."""
    cmos = _cmo_states(con)
    products = _products(con)
    rejects = RejectCollector()
    # the counts of every CMO of the file, read once (a file returns from thousands of
    # (CMO, product) pairs; rows of one pair build on each other below)
    counts = holder_counts(con, _file_cmos(rows))
    plan: list[dict[str, Any]] = []
    warnings: list[str] = []
    for row in rows.iter_rows(named=True):
        if not _check_cmo_product(rejects, row, cmos, products, None):
            continue
        cmo_id, product = row["cmo_id"], row["product_code"]
        key = (cmo_id, product)
        if key not in counts:
            counts[key] = HolderCounts()
        held = counts[key].assigned_not_exported
        quantity = held if row["quantity"].upper() == "ALL" else int(row["quantity"])
        if quantity > held:
            rejects.add(
                row[LINE], "quantity", row["quantity"], "not_enough_assigned",
                f"cannot return {quantity} serials of product {product}: CMO '{cmo_id}' holds only "
                f"{held} assigned serials that were never exported, requested or used",
            )  # fmt: skip
            continue
        if quantity == 0:  # ALL of nothing
            warnings.append(
                f"line {row[LINE]}: CMO '{cmo_id}' holds no assigned serials of product {product} "
                "that were never exported, requested or used: nothing was returned"
            )
        counts[key].assigned_not_exported -= quantity
        plan.append(
            {"k": len(plan), "cmo_id": cmo_id, "product_code": product, "quantity": quantity}
        )
    if not plan:
        return FileResult(rejects=rejects.frame())
    runs, pids = _runs_with_codes(con, {p["product_code"] for p in plan})
    for p in plan:
        p["g"] = f"{p['cmo_id']}|{pids.get(p['product_code'], -1)}"
    candidates = (
        runs.filter(ASSIGNED_NOT_EXPORTED)
        .with_columns(_group_key().alias("g"))
        .sort("g", "assign_seq", descending=[False, True])
    )
    pieces = sr.take_slices(candidates, _slices(plan, "g"), by="g", from_end=True)
    patches = pieces.select("pid", "lo", "hi").with_columns(
        pl.lit(None, pl.String).alias("cmo_id"), pl.lit(None, pl.Int64).alias("assign_seq")
    )
    save_runs(con, pids.values(), sr.overlay(runs, patches, ["cmo_id", "assign_seq"]))
    return FileResult(rejects=rejects.frame(), rows_applied=len(plan), warnings=warnings)


# --------------------------------------------------------------------------- exports §5.4

_UNSAFE = re.compile(r"[^A-Za-z0-9.\-]+")


def safe_cmo_name(cmo_name: str | None, cmo_id: str) -> str:
    """The CMO name made safe for a file name, in the order of §5.4."""
    safe = _UNSAFE.sub("-", cmo_name or "")
    safe = safe.lstrip(".-")
    safe = safe[:60]
    return safe or cmo_id


def export_file_name(
    product_code: str, cmo_name: str | None, cmo_id: str, count: int, created: Any, duplicates: bool
) -> str:
    """`<product_code>_<cmo name>_<count>_<YYYYMMDDHHMMSS>[_CanContainDuplicateSerials].csv`."""
    suffix = DUPLICATE_SUFFIX if duplicates else ""
    return f"{product_code}_{safe_cmo_name(cmo_name, cmo_id)}_{count}_{created:%Y%m%d%H%M%S}{suffix}.csv"


def _names_taken(con: duckdb.DuckDBPyConnection, as_of: dt.datetime) -> dict[str, set[str]]:
    """The export file names each CMO has that a file of a run at `as_of` could clash with.

    A name holds its run's clock to the second (`export_file_name`), so only files
    created in that second can share it: a lookup by time (the files are stored in
    the order they were recorded), not a read of every export file ever."""
    second = as_of.replace(microsecond=0)
    taken: dict[str, set[str]] = {}
    for cmo_id, name in con.execute(
        """SELECT cmo_id, file_name FROM outbox_files
           WHERE kind = 'export' AND created >= ? AND created < ?""",
        [second, second + dt.timedelta(seconds=1)],
    ).fetchall():
        taken.setdefault(str(cmo_id), set()).add(str(name))
    return taken


def _unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    stem = name[: -len(".csv")]
    n = 2
    while f"{stem}-{n}.csv" in taken:
        n += 1
    return f"{stem}-{n}.csv"


_PIECE = ["k", "ord", "pid", "lo", "hi", "export_count"]


def _record_outbox_files(
    con: duckdb.DuckDBPyConnection, files: list[dict[str, Any]], pieces: pl.DataFrame
) -> None:
    """Record the files and their serials (ranges: `pieces` with `file_id`, `ord`)."""
    if not files:
        return
    fview = register(con, pl.DataFrame(files), "outbox_files")
    con.execute(
        f"""INSERT INTO outbox_files (file_id, kind, cmo_id, product_code, rel_path, file_name, count,
                created, can_contain_duplicates, request_id, quantity, run_id)
            SELECT file_id, kind, cmo_id, product_code, rel_path, file_name, count, created,
                   can_contain_duplicates, request_id, quantity, run_id FROM {fview}"""
    )
    con.unregister(fview)
    if pieces.height:
        rview = register(con, pieces.select("file_id", "ord", "pid", "lo", "hi"), "outbox_ranges")
        con.execute(f"INSERT INTO outbox_ranges SELECT file_id, ord, pid, lo, hi FROM {rview}")
        con.unregister(rview)


def _export_candidates(runs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(never exported, oldest assigned first; exported before, least recently first),
    each with its group column `g` — what an export may take, per (CMO, product)."""
    held = runs.filter(ASSIGNED & ~USED).with_columns(_group_key().alias("g"))
    fresh = held.filter(pl.col("export_count") == 0).sort("g", "assign_seq")
    again = held.filter(pl.col("export_count") > 0).sort("g", "last_export_id", "assign_seq")
    return fresh, again


def _export_pieces(
    runs: pl.DataFrame, plan: list[dict[str, Any]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The serials each planned export takes (k, ord, pid, lo, hi, export_count) and the
    patches (pid, lo, hi, export_count, last_export_id) that record the exports.

    Never-exported serials first (oldest assigned first), then previously exported
    ones (least recently exported first).  Rows of a group that take no previously
    exported serial are cut from one order at once; a group with such a row is
    walked row by row, because each export moves its serials to the back of the
    previously-exported order.
    """
    fresh, again = _export_candidates(runs)
    walked = {p["g"] for p in plan if p["again"]}
    simple = [p for p in plan if p["g"] not in walked]
    parts, patches = [], []
    if simple:
        cut = sr.take_slices(
            fresh.filter(~pl.col("g").is_in(list(walked))), _slices(simple, "g", "new"), by="g"
        ).select(_PIECE)
        parts.append(cut)
        file_ids = pl.DataFrame(
            {"k": [p["k"] for p in simple], "last_export_id": [p["file_id"] for p in simple]},
            schema={"k": pl.Int64, "last_export_id": pl.Int64},
        )
        patches.append(
            cut.join(file_ids, on="k").select(
                "pid", "lo", "hi", pl.col("export_count") + 1, "last_export_id"
            )
        )
    for g in sorted(walked):
        group = runs.filter(ASSIGNED & ~USED).filter(_group_key() == g)
        for p in (p for p in plan if p["g"] == g):
            f, a = _export_candidates(group)
            new = sr.take(f, p["new"]).with_columns(pl.lit(p["k"], pl.Int64).alias("k"))
            old = sr.take(a, p["again"]).with_columns(
                pl.lit(p["k"], pl.Int64).alias("k"), pl.col("offset") + p["new"]
            )
            took = pl.concat([new, old]).rename({"offset": "ord"})
            parts.append(took.select(_PIECE))
            group = sr.overlay(
                group,
                took.select(
                    "pid", "lo", "hi", pl.col("export_count") + 1,
                    pl.lit(p["file_id"], pl.Int64).alias("last_export_id"),
                ),
                ["export_count", "last_export_id"],
            )  # fmt: skip
        patches.append(group.select("pid", "lo", "hi", "export_count", "last_export_id"))
    pieces = pl.concat(parts, how="vertical_relaxed").sort("k", "ord")
    return pieces, pl.concat(patches, how="vertical_relaxed")


def apply_exports(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """Export assigned serials to CSV files for the CMO (§5.4), recorded for materialisation."""
    cmos = _cmo_states(con)
    names = {r[0]: r[1] for r in con.execute("SELECT cmo_id, cmo_name FROM cmos").fetchall()}
    products = _products(con)
    rejects = RejectCollector()
    rows = rows.with_columns(
        bool_expr(pl.col("allow_already_exported")).fill_null(False).alias("_allow")
    )
    good = [
        r
        for r in rows.iter_rows(named=True)
        if _check_cmo_product(rejects, r, cmos, products, None)
    ]
    counts = holder_counts(con, [r["cmo_id"] for r in good])
    plan: list[dict[str, Any]] = []
    for row in good:
        key = (row["cmo_id"], row["product_code"])
        c = counts.setdefault(key, HolderCounts())
        qty = int(row["quantity"])
        limit = (c.assigned - c.used) if row["_allow"] else c.assigned_not_exported
        if qty > limit:
            if row["_allow"]:
                msg = (
                    f"cannot export {qty} serials of product {row['product_code']} to CMO "
                    f"'{row['cmo_id']}': it holds {c.assigned} assigned serials, {c.used} of them "
                    "already reported commissioned, shipped or decommissioned, so at most "
                    f"{limit} can be exported"
                )
            else:
                msg = (
                    f"cannot export {qty} serials of product {row['product_code']} to CMO "
                    f"'{row['cmo_id']}': only {c.assigned_not_exported} assigned serials were never "
                    f"exported ({c.assigned} assigned in all); set allow_already_exported to Y to "
                    "include previously exported serials"
                )
            rejects.add(row[LINE], "quantity", row["quantity"], "not_enough_assigned", msg)
            continue
        new = min(qty, c.assigned_not_exported)
        c.assigned_not_exported -= new
        plan.append({"k": len(plan), "row": row, "new": new, "again": qty - new})
    if not plan:
        return FileResult(rejects=rejects.frame())
    runs, pids = _runs_with_codes(con, {p["row"]["product_code"] for p in plan})
    first_id = take_counter(con, "outbox_file", len(plan))
    for p in plan:
        p["file_id"] = first_id + p["k"]
        p["g"] = f"{p['row']['cmo_id']}|{pids.get(p['row']['product_code'], -1)}"
    pieces, patches = _export_pieces(runs, plan)
    pieces = pieces.with_columns((pl.col("k") + first_id).alias("file_id"))
    taken = _names_taken(con, ctx.as_of)
    files: list[dict[str, Any]] = []
    for p in plan:
        row, count = p["row"], p["new"] + p["again"]
        cmo_id = row["cmo_id"]
        name = export_file_name(
            row["product_code"], names.get(cmo_id), cmo_id, count, ctx.as_of, p["again"] > 0
        )
        name = _unique_name(name, taken.setdefault(cmo_id, set()))
        taken[cmo_id].add(name)
        files.append(
            {"file_id": p["file_id"], "kind": "export", "cmo_id": cmo_id, "product_code": row["product_code"],
             "rel_path": f"serials/{cmo_id}/{name}", "file_name": name, "count": count,
             "created": ctx.as_of, "can_contain_duplicates": p["again"] > 0, "request_id": None,
             "quantity": int(row["quantity"]), "run_id": ctx.run_id}
        )  # fmt: skip
    save_runs(con, pids.values(), sr.overlay(runs, patches, ["export_count", "last_export_id"]))
    _record_outbox_files(con, files, pieces)
    return FileResult(rejects=rejects.frame(), rows_applied=len(plan))


# --------------------------------------------------------------------------- partner requests §5.5


def apply_partner_requests(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """Serve active partners' requests from assigned-not-exported serials, oldest first (§5.5)."""
    cmos = _cmo_states(con)
    products = _products(con)
    rejects = RejectCollector()
    warnings: list[str] = []
    seen = {
        r[0]: (r[1], r[2], int(r[3]), r[4], int(r[5]))
        for r in con.execute(
            "SELECT request_id, cmo_id, product_code, quantity, run_id, file_id FROM outbox_files "
            "WHERE kind = 'partner'"
        ).fetchall()
    }
    asked_again: list[int] = []  # first answers of requests repeated (§5.5)
    plan: list[dict[str, Any]] = []
    counts = holder_counts(con, _file_cmos(rows))
    for row in rows.iter_rows(named=True):
        line, request_id = row[LINE], row["request_id"]
        values = (row["cmo_id"], row["product_code"], int(row["quantity"]))
        if request_id in seen:
            first = seen[request_id]
            if first[:3] == values:
                warnings.append(
                    f"partner request '{request_id}' (line {line}) was served before (run {first[3]}): "
                    "nothing new served, the first answer file is kept"
                )
                if first[4] >= 0:
                    asked_again.append(first[4])
                continue
            rejects.add(
                line, "request_id", request_id, "request_id_reused",
                f"request_id '{request_id}' was used before for CMO '{first[0]}', product {first[1]}, "
                f"quantity {first[2]}: a new request needs a new request_id",
            )  # fmt: skip
            continue
        if not _check_cmo_product(rejects, row, cmos, products, None):
            continue
        if cmos[row["cmo_id"]][1] != "active":
            rejects.add(
                line, "cmo_id", row["cmo_id"], "not_partner",
                f"CMO '{row['cmo_id']}' has no active partnership (status "
                f"'{cmos[row['cmo_id']][1]}'): only active partners may request serials",
            )  # fmt: skip
            continue
        key = (row["cmo_id"], row["product_code"])
        if key not in counts:
            counts[key] = HolderCounts()
        c = counts[key]
        if values[2] > c.assigned_not_exported:
            rejects.add(
                line, "quantity", row["quantity"], "not_enough_assigned",
                f"cannot serve {values[2]} serials of product {row['product_code']}: CMO "
                f"'{row['cmo_id']}' holds only {c.assigned_not_exported} assigned serials that were "
                "never exported or requested",
            )  # fmt: skip
            continue
        c.assigned_not_exported -= values[2]
        seen[request_id] = (*values, ctx.run_id, -1)  # its answer is recorded below
        plan.append({"k": len(plan), "row": row, "quantity": values[2]})
    if not plan:
        return FileResult(rejects=rejects.frame(), warnings=warnings, asked_again=asked_again)
    runs, pids = _runs_with_codes(con, {p["row"]["product_code"] for p in plan})
    first_id = take_counter(con, "outbox_file", len(plan))
    for p in plan:
        p["g"] = f"{p['row']['cmo_id']}|{pids.get(p['row']['product_code'], -1)}"
    fresh, _ = _export_candidates(runs)
    pieces = sr.take_slices(fresh, _slices(plan, "g"), by="g").with_columns(
        (pl.col("k") + first_id).alias("file_id")
    )
    request_ids = pl.DataFrame(
        {"k": [p["k"] for p in plan], "_rid": [p["row"]["request_id"] for p in plan]},
        schema={"k": pl.Int64, "_rid": pl.String},
    )
    patches = pieces.join(request_ids, on="k").select(
        "pid", "lo", "hi", pl.col("_rid").alias("request_id")
    )
    save_runs(con, pids.values(), sr.overlay(runs, patches, ["request_id"]))
    files: list[dict[str, Any]] = []
    for p in plan:
        row = p["row"]
        name = f"{row['request_id']}.csv"
        files.append(
            {"file_id": first_id + p["k"], "kind": "partner", "cmo_id": row["cmo_id"],
             "product_code": row["product_code"], "rel_path": f"partners/{row['cmo_id']}/{name}",
             "file_name": name, "count": p["quantity"], "created": ctx.as_of,
             "can_contain_duplicates": False, "request_id": row["request_id"],
             "quantity": p["quantity"], "run_id": ctx.run_id}
        )  # fmt: skip
    _record_outbox_files(con, files, pieces)
    return FileResult(
        rejects=rejects.frame(), rows_applied=len(plan), warnings=warnings, asked_again=asked_again
    )
