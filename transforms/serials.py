"""Serial rules: pool, in-house generation, assignment, returns, exports, partner requests (SPEC §5).

Status changes are set-based: DuckDB statements over the `serials` table, or
Polars over the few (CMO, product) groups a file touches.  The only Python loops
run over the rows of a request file (hundreds), never over serials.

The counts of §5, as predicates over `serials`:
- available: `cmo_id IS NULL`
- assigned: `cmo_id = c AND request_id IS NULL`
- assigned not exported: assigned and `export_count = 0` and not commissioned/shipped
- requested: `cmo_id = c AND request_id IS NOT NULL`
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import polars as pl

from transforms.codes import bool_expr
from transforms.context import FileResult, RunContext
from transforms.rejects import LINE, REJECT_SCHEMA, RejectCollector, concat_rejects, reject_where
from transforms.state import register, take_counter

ASSIGNED_NOT_EXPORTED = (
    "request_id IS NULL AND export_count = 0 AND NOT commissioned AND NOT shipped"
)
CHARSETS = {"numeric": "0123456789", "alphanumeric": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
DUPLICATE_SUFFIX = "_CanContainDuplicateSerials"
MAX_GENERATE_PER_ROW = 10_000_000  # one row's serials are drawn in memory


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
        rejects.add(
            line,
            "product_code",
            product,
            "unknown_product",
            f"product {product} does not exist: load it in a products file first",
        )
        return False
    if produceable is not None and (cmo_id, product) not in produceable:
        rejects.add(
            line, "product_code", product, "not_produceable",
            f"product {product} is not among the produceable products of CMO '{cmo_id}': add it "
            "to produceable_products in a cmos file first",
        )  # fmt: skip
        return False
    return True


def available_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Serials in the pool (not assigned) per product."""
    return {
        r[0]: int(r[1])
        for r in con.execute(
            "SELECT product_code, count(*) FROM serials WHERE cmo_id IS NULL GROUP BY product_code"
        ).fetchall()
    }


@dataclass
class HolderCounts:
    assigned: int = 0
    assigned_not_exported: int = 0
    used: int = 0  # assigned and reported commissioned or shipped


def holder_counts(
    con: duckdb.DuckDBPyConnection, cmo_ids: list[str]
) -> dict[tuple[str, str], HolderCounts]:
    """The §5 counts of every (CMO, product) these CMOs hold."""
    if not cmo_ids:
        return {}
    view = register(con, pl.DataFrame({"cmo_id": sorted(set(cmo_ids))}), "cmo_ids")
    rows = con.execute(
        f"""SELECT cmo_id, product_code, count(*),
                   count(*) FILTER (WHERE export_count = 0 AND NOT commissioned AND NOT shipped),
                   count(*) FILTER (WHERE commissioned OR shipped)
            FROM serials WHERE request_id IS NULL AND cmo_id IN (SELECT cmo_id FROM {view})
            GROUP BY cmo_id, product_code"""
    ).fetchall()
    con.unregister(view)
    return {(r[0], r[1]): HolderCounts(int(r[2]), int(r[3]), int(r[4])) for r in rows}


# --------------------------------------------------------------------------- pool §5.1


def apply_serial_pool(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """Add delivered serials to the pool in file order; a serial exists once per product, for ever."""
    rows = rows.select(LINE, "product_code", "serial")
    # Tens of millions of rows: filter (copy) only when something is wrong.
    known = pl.col("product_code").is_in(sorted(_products(con)))
    unknown = rows.filter(~known)
    rej_unknown = reject_where(
        unknown, pl.lit(True), column="product_code", rule="unknown_product",
        message=pl.lit("product ") + pl.col("product_code") + pl.lit(" does not exist: load it in a products file first"),
    )  # fmt: skip
    if unknown.height:
        rows = rows.filter(known)
    # 64-bit hashes first: only when two rows share one are the strings compared
    hashed = rows.select(pl.struct("product_code", "serial").hash().alias("h")).to_series()
    repeat = (
        rows.select("product_code", "serial").is_duplicated()
        if hashed.is_duplicated().any()
        else pl.repeat(False, rows.height, dtype=pl.Boolean, eager=True)
    )
    del hashed
    repeated = (
        rows.filter(repeat).filter(~pl.struct("product_code", "serial").is_first_distinct())
        if repeat.any()
        else rows.clear()
    )
    rej_repeat = pl.DataFrame(schema=REJECT_SCHEMA)
    if repeated.height:
        first = (
            rows.join(
                repeated.select("product_code", "serial").unique(), on=["product_code", "serial"]
            )
            .group_by("product_code", "serial")
            .agg(pl.col(LINE).min().alias("first_line"))
        )
        repeated = repeated.join(first, on=["product_code", "serial"], maintain_order="left")
        rej_repeat = reject_where(
            repeated, pl.lit(True), column="serial", rule="duplicate_serial",
            message=pl.lit("serial '") + pl.col("serial") + pl.lit("' of product ")
            + pl.col("product_code") + pl.lit(" repeats line ") + pl.col("first_line").cast(pl.String)
            + pl.lit(" of this file: a serial exists once per product"),
        )  # fmt: skip
        rows = rows.join(repeated.select(LINE), on=LINE, how="anti", maintain_order="left")
    view = register(con, rows, "pool")
    existing = con.execute(
        f"""SELECT r.{LINE} AS {LINE}, r.product_code, r.serial FROM {view} r
            JOIN serials s ON s.product_code = r.product_code AND s.serial = r.serial"""
    ).pl()
    rej_existing = reject_where(
        existing, pl.lit(True), column="serial", rule="serial_exists",
        message=pl.lit("serial '") + pl.col("serial") + pl.lit("' already exists for product ")
        + pl.col("product_code") + pl.lit(": a serial exists once per product, for ever"),
    )  # fmt: skip
    con.unregister(view)
    if existing.height:
        rows = rows.join(existing.select(LINE), on=LINE, how="anti", maintain_order="left")
    _insert_serials(con, rows.select("product_code", "serial"), "pool")
    return FileResult(
        rejects=concat_rejects(rej_unknown, rej_repeat, rej_existing), rows_applied=rows.height
    )


def _insert_serials(con: duckdb.DuckDBPyConnection, serials: pl.DataFrame, source: str) -> None:
    """Append new serials to the pool with consecutive arrival numbers (FIFO)."""
    if serials.height == 0:
        return
    first = take_counter(con, "sid", serials.height)
    frame = serials.with_columns(
        (pl.int_range(0, pl.len(), dtype=pl.Int64) + first).alias("sid"),
        pl.lit(source).alias("source"),
    )
    view = register(con, frame, "new_serials")
    con.execute(
        f"""INSERT INTO serials (sid, product_code, serial, source)
            SELECT sid, product_code, serial, source FROM {view}"""
    )
    con.unregister(view)


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
        for r in con.execute(
            "SELECT product_code, count(*) FROM serials GROUP BY product_code"
        ).fetchall()
    }
    rejects = RejectCollector()
    applied = 0
    for row in rows.iter_rows(named=True):
        line, product, qty = row[LINE], row["product_code"], int(row["quantity"])
        if product not in products:
            rejects.add(
                line,
                "product_code",
                product,
                "unknown_product",
                f"product {product} does not exist: load it in a products file first",
            )
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
            con, product, qty, cfg.generated_length, CHARSETS[cfg.generated_charset], random_bytes
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
) -> None:
    """Draw until `qty` serials are new for the product (collisions are redrawn)."""
    fresh = pl.DataFrame(schema={"serial": pl.String})
    while fresh.height < qty:
        draw = pl.DataFrame(
            {"serial": random_serials(qty - fresh.height, length, charset, random_bytes)},
            schema={"serial": pl.String},
        )
        draw = pl.concat([fresh, draw]).unique("serial", maintain_order=True)
        view = register(con, draw, "draw")
        taken = con.execute(
            f"SELECT d.serial FROM {view} d JOIN serials s ON s.serial = d.serial AND s.product_code = ?",
            [product],
        ).pl()
        con.unregister(view)
        fresh = draw.join(taken, on="serial", how="anti", maintain_order="left")
    _insert_serials(
        con,
        fresh.head(qty)
        .with_columns(pl.lit(product).alias("product_code"))
        .select("product_code", "serial"),
        "generated",
    )


# --------------------------------------------------------------------------- assignment §5.3


def apply_assignments(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """Assign the oldest available serials, all or nothing per row, in file order."""
    cmos = _cmo_states(con)
    products = _products(con)
    produceable = _produceable(con)
    available = available_counts(con)
    rejects = RejectCollector()
    accepted: list[dict[str, Any]] = []
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
        accepted.append(
            {"k": len(accepted), "cmo_id": row["cmo_id"], "product_code": product,
             "lo": taken.get(product, 0), "hi": taken.get(product, 0) + qty}
        )  # fmt: skip
        taken[product] = taken.get(product, 0) + qty
    if accepted:
        total = sum(r["hi"] - r["lo"] for r in accepted)
        base = take_counter(con, "assign_seq", total)
        ranges = pl.DataFrame(accepted).with_columns(
            (pl.col("hi") - pl.col("lo")).cum_sum().shift(1, fill_value=0).alias("seq_base")
        )
        view = register(con, ranges, "ranges")
        con.execute(
            f"""WITH avail AS (
                    SELECT sid, product_code,
                           row_number() OVER (PARTITION BY product_code ORDER BY sid) AS rk
                    FROM serials
                    WHERE cmo_id IS NULL AND product_code IN (SELECT product_code FROM {view})),
                take AS (
                    SELECT a.sid, r.cmo_id, {base} + r.seq_base + (a.rk - r.lo - 1) AS assign_seq
                    FROM avail a JOIN {view} r
                      ON a.product_code = r.product_code AND a.rk > r.lo AND a.rk <= r.hi)
                UPDATE serials SET cmo_id = take.cmo_id, assign_seq = take.assign_seq
                FROM take WHERE serials.sid = take.sid"""
        )
        con.unregister(view)
    return FileResult(rejects=rejects.frame(), rows_applied=len(accepted))


# --------------------------------------------------------------------------- returns §5.6


def return_unexported(
    con: duckdb.DuckDBPyConnection, cmo_id: str, product_code: str | None, quantity: int | None
) -> int:
    """Return assigned-not-exported serials (most recently assigned first) to the pool.

    They keep their arrival number, so the pool's FIFO order is their original one.
    `product_code` None = every product; `quantity` None = all of them.
    """
    where = f"cmo_id = ? AND {ASSIGNED_NOT_EXPORTED}"
    params: list[Any] = [cmo_id]
    if product_code is not None:
        where += " AND product_code = ?"
        params.append(product_code)
    limit = "" if quantity is None else f"LIMIT {int(quantity)}"
    before = con.execute(f"SELECT count(*) FROM serials WHERE {where}", params).fetchone()
    con.execute(
        f"""UPDATE serials SET cmo_id = NULL, assign_seq = NULL
            WHERE sid IN (SELECT sid FROM serials WHERE {where} ORDER BY assign_seq DESC, sid DESC {limit})""",
        params,
    )
    held = int(before[0]) if before else 0
    return held if quantity is None else min(held, quantity)


def apply_serial_returns(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """Return a quantity (or ALL) of a CMO's assigned-not-exported serials to the pool (§5.6)."""
    cmos = _cmo_states(con)
    products = _products(con)
    rejects = RejectCollector()
    applied = 0
    for row in rows.iter_rows(named=True):
        if not _check_cmo_product(rejects, row, cmos, products, None):
            continue
        cmo_id, product = row["cmo_id"], row["product_code"]
        held = (
            holder_counts(con, [cmo_id])
            .get((cmo_id, product), HolderCounts())
            .assigned_not_exported
        )
        quantity = None if row["quantity"].upper() == "ALL" else int(row["quantity"])
        if quantity is not None and quantity > held:
            rejects.add(
                row[LINE], "quantity", row["quantity"], "not_enough_assigned",
                f"cannot return {quantity} serials of product {product}: CMO '{cmo_id}' holds only "
                f"{held} assigned serials that were never exported, requested or used",
            )  # fmt: skip
            continue
        return_unexported(con, cmo_id, product, quantity)
        applied += 1
    return FileResult(rejects=rejects.frame(), rows_applied=applied)


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


def _unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    stem = name[: -len(".csv")]
    n = 2
    while f"{stem}-{n}.csv" in taken:
        n += 1
    return f"{stem}-{n}.csv"


_GROUP_COLUMNS = ["sid", "product_code", "serial", "assign_seq", "export_count", "last_export_id"]


def _load_groups(
    con: duckdb.DuckDBPyConnection, pairs: set[tuple[str, str]], extra_where: str
) -> dict[tuple[str, str], pl.DataFrame]:
    """The serials each (CMO, product) holds, not requested and not used, split per pair."""
    if not pairs:
        return {}
    view = register(
        con, pl.DataFrame([{"cmo_id": c, "product_code": p} for c, p in sorted(pairs)]), "pairs"
    )
    frame = con.execute(
        f"""SELECT s.cmo_id, {", ".join("s." + c for c in _GROUP_COLUMNS)} FROM serials s
            JOIN {view} p ON s.cmo_id = p.cmo_id AND s.product_code = p.product_code
            WHERE s.request_id IS NULL AND NOT s.commissioned AND NOT s.shipped {extra_where}"""
    ).pl()
    con.unregister(view)
    groups: dict[tuple[str, str], pl.DataFrame] = {pair: frame.clear() for pair in pairs}
    for key, part in frame.partition_by(["cmo_id", "product_code"], as_dict=True).items():
        groups[(str(key[0]), str(key[1]))] = part
    return groups


@dataclass
class _Taken:
    file_id: int
    serials: pl.DataFrame  # product_code, serial, sid in file order


def _record_outbox_files(
    con: duckdb.DuckDBPyConnection, files: list[dict[str, Any]], taken: list[_Taken]
) -> None:
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
    items = pl.concat(
        [
            t.serials.select(
                pl.lit(t.file_id, pl.Int64).alias("file_id"),
                pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("ord"),
                "product_code",
                "serial",
            )
            for t in taken
        ]
    )
    iview = register(con, items, "outbox_items")
    con.execute(f"INSERT INTO outbox_items SELECT file_id, ord, product_code, serial FROM {iview}")
    con.unregister(iview)


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
    plan: list[tuple[dict[str, Any], int, int]] = []  # row, new serials, already exported ones
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
                    f"already reported commissioned or shipped, so at most {limit} can be exported"
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
        plan.append((row, new, qty - new))
    if not plan:
        return FileResult(rejects=rejects.frame())
    groups = _load_groups(con, {(r["cmo_id"], r["product_code"]) for r, _, _ in plan}, "")
    taken_names = {
        (r[0], r[1])
        for r in con.execute(
            "SELECT cmo_id, file_name FROM outbox_files WHERE kind = 'export'"
        ).fetchall()
    }
    first_id = take_counter(con, "outbox_file", len(plan))
    files: list[dict[str, Any]] = []
    taken: list[_Taken] = []
    for i, (row, new, again) in enumerate(plan):
        file_id = first_id + i
        key = (row["cmo_id"], row["product_code"])
        g = groups[key]
        fresh = g.filter(pl.col("export_count") == 0).sort("assign_seq", "sid").head(new)
        old = (
            g.filter(pl.col("export_count") > 0)
            .sort("last_export_id", "assign_seq", "sid")
            .head(again)
            if again
            else g.clear()
        )
        chosen = pl.concat([fresh, old])
        hit = pl.col("sid").is_in(chosen.get_column("sid").implode())
        groups[key] = g.with_columns(
            pl.when(hit)
            .then(pl.col("export_count") + 1)
            .otherwise(pl.col("export_count"))
            .alias("export_count"),
            pl.when(hit)
            .then(pl.lit(file_id, pl.Int64))
            .otherwise(pl.col("last_export_id"))
            .alias("last_export_id"),
        )
        cmo_id = row["cmo_id"]
        name = export_file_name(
            row["product_code"], names.get(cmo_id), cmo_id, chosen.height, ctx.as_of, again > 0
        )
        name = _unique_name(name, {n for c, n in taken_names if c == cmo_id})
        taken_names.add((cmo_id, name))
        files.append(
            {"file_id": file_id, "kind": "export", "cmo_id": cmo_id, "product_code": row["product_code"],
             "rel_path": f"serials/{cmo_id}/{name}", "file_name": name, "count": chosen.height,
             "created": ctx.as_of, "can_contain_duplicates": again > 0, "request_id": None,
             "quantity": int(row["quantity"]), "run_id": ctx.run_id}
        )  # fmt: skip
        taken.append(_Taken(file_id, chosen.select("product_code", "serial", "sid")))
    _apply_group_updates(
        con, groups, ["export_count", "last_export_id"], [t.serials for t in taken]
    )
    _record_outbox_files(con, files, taken)
    return FileResult(rejects=rejects.frame(), rows_applied=len(plan))


def _apply_group_updates(
    con: duckdb.DuckDBPyConnection,
    groups: dict[tuple[str, str], pl.DataFrame],
    columns: list[str],
    touched: list[pl.DataFrame],
) -> None:
    """Write the changed columns of the touched serials back, in one statement."""
    sids = pl.concat([t.select("sid") for t in touched]).unique()
    if sids.height == 0:
        return
    changed = pl.concat([g.select(["sid", *columns]) for g in groups.values() if g.height]).join(
        sids, on="sid"
    )
    view = register(con, changed, "changed")
    sets = ", ".join(f"{c} = u.{c}" for c in columns)
    con.execute(f"UPDATE serials SET {sets} FROM {view} u WHERE serials.sid = u.sid")
    con.unregister(view)


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
        r[0]: (r[1], r[2], int(r[3]), r[4])
        for r in con.execute(
            "SELECT request_id, cmo_id, product_code, quantity, run_id FROM outbox_files WHERE kind = 'partner'"
        ).fetchall()
    }
    plan: list[dict[str, Any]] = []
    counts: dict[tuple[str, str], HolderCounts] = {}
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
            counts[key] = holder_counts(con, [row["cmo_id"]]).get(key, HolderCounts())
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
        seen[request_id] = (*values, ctx.run_id)
        plan.append(row)
    if not plan:
        return FileResult(rejects=rejects.frame(), warnings=warnings)
    groups = _load_groups(
        con, {(r["cmo_id"], r["product_code"]) for r in plan}, "AND s.export_count = 0"
    )
    first_id = take_counter(con, "outbox_file", len(plan))
    files: list[dict[str, Any]] = []
    taken: list[_Taken] = []
    served: list[pl.DataFrame] = []
    for i, row in enumerate(plan):
        key = (row["cmo_id"], row["product_code"])
        g = groups[key]
        chosen = (
            g.filter(pl.col("export_count") == 0)
            .sort("assign_seq", "sid")
            .head(int(row["quantity"]))
        )
        groups[key] = g.filter(~pl.col("sid").is_in(chosen.get_column("sid").implode()))
        name = f"{row['request_id']}.csv"
        files.append(
            {"file_id": first_id + i, "kind": "partner", "cmo_id": row["cmo_id"],
             "product_code": row["product_code"], "rel_path": f"partners/{row['cmo_id']}/{name}",
             "file_name": name, "count": chosen.height, "created": ctx.as_of,
             "can_contain_duplicates": False, "request_id": row["request_id"],
             "quantity": int(row["quantity"]), "run_id": ctx.run_id}
        )  # fmt: skip
        taken.append(_Taken(first_id + i, chosen.select("product_code", "serial", "sid")))
        served.append(chosen.select("sid", pl.lit(row["request_id"]).alias("request_id")))
    view = register(con, pl.concat(served), "served")
    con.execute(
        f"UPDATE serials SET request_id = u.request_id FROM {view} u WHERE serials.sid = u.sid"
    )
    con.unregister(view)
    _record_outbox_files(con, files, taken)
    return FileResult(rejects=rejects.frame(), rows_applied=len(plan), warnings=warnings)
