"""The serial side's state reports and invariants (SPEC §8, §10), as frames.

Every report is a frame of strings/integers with exactly the §10 columns, in a
deterministic order; the outbox connector writes it.
"""

from __future__ import annotations

import duckdb
import polars as pl

from transforms.codes import same_serial_sql

CMOS_COLUMNS = [
    "cmo_id", "cmo_name", "street1", "street2", "street3", "city", "state", "zip_code",
    "country", "produceable_products", "collaboration_channel", "sgln", "partnership_status",
    "contact_email", "tenant", "payment_model", "deleted",
]  # fmt: skip
SERIAL_BALANCE_COLUMNS = [
    "cmo_id", "cmo_name", "product_code", "product_name", "available", "assigned",
    "assigned_not_exported", "exported", "requested", "commissioned", "shipped", "decommissioned",
]  # fmt: skip
EXPORTED_FILES_COLUMNS = [
    "cmo_id",
    "file_name",
    "product_code",
    "count",
    "created",
    "can_contain_duplicates",
]
REJECTS_COLUMNS = ["file", "line", "column", "value", "rule", "message"]


def cmos_report(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """`cmos.csv`: every CMO, deleted ones too, produceable products joined by `;`."""
    return con.execute(
        """SELECT c.cmo_id, c.cmo_name, c.street1, c.street2, c.street3, c.city, c.state,
                  c.zip_code, c.country,
                  (SELECT string_agg(p.product_code, ';' ORDER BY p.pos) FROM cmo_products p
                   WHERE p.cmo_id = c.cmo_id) AS produceable_products,
                  c.collaboration_channel, c.sgln, c.partnership_status, c.contact_email,
                  c.tenant, c.payment_model, CASE WHEN c.deleted THEN 'Y' ELSE 'N' END AS deleted
           FROM cmos c ORDER BY c.cmo_id"""
    ).pl()


# a serial that left the pool for good (§4.2): exported, requested, commissioned, shipped
# (or decommissioned); a deleted CMO keeps its balance rows of the products it holds such of
LEFT_POOL = (
    "(export_count > 0 OR request_id IS NOT NULL OR commissioned OR shipped OR decommissioned)"
)


def serial_balance_report(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """`serial_balance.csv`: one row per produceable product of each CMO not deleted, plus
    every (CMO, product) that holds serials; a deleted CMO keeps only the rows of the
    products of which it still holds serials that left the pool (§4.2); counts as
    defined in §5."""
    return con.execute(
        f"""WITH runs AS (
               SELECT sp.product_code, r.*, r.hi - r.lo AS n
               FROM serial_runs r JOIN serial_products sp ON sp.pid = r.pid),
           held AS (
               SELECT cmo_id, product_code,
                      sum(n) FILTER (WHERE request_id IS NULL) AS assigned,
                      sum(n) FILTER (WHERE request_id IS NULL AND export_count = 0
                                     AND NOT commissioned AND NOT shipped
                                     AND NOT decommissioned) AS assigned_not_exported,
                      sum(n) FILTER (WHERE request_id IS NULL AND export_count > 0) AS exported,
                      sum(n) FILTER (WHERE request_id IS NOT NULL) AS requested,
                      sum(n) FILTER (WHERE commissioned) AS commissioned,
                      sum(n) FILTER (WHERE shipped) AS shipped,
                      sum(n) FILTER (WHERE decommissioned) AS decommissioned,
                      sum(n) FILTER (WHERE {LEFT_POOL}) AS left_pool
               FROM runs WHERE cmo_id IS NOT NULL GROUP BY cmo_id, product_code),
           avail AS (
               SELECT product_code, sum(n) AS available FROM runs
               WHERE cmo_id IS NULL GROUP BY product_code),
           pairs AS (
               SELECT cmo_id, product_code FROM cmo_products
               UNION SELECT cmo_id, product_code FROM held)
           SELECT c.cmo_id, c.cmo_name, p.product_code, pr.product_name,
                  coalesce(a.available, 0)::BIGINT AS available,
                  coalesce(h.assigned, 0)::BIGINT AS assigned,
                  coalesce(h.assigned_not_exported, 0)::BIGINT AS assigned_not_exported,
                  coalesce(h.exported, 0)::BIGINT AS exported,
                  coalesce(h.requested, 0)::BIGINT AS requested,
                  coalesce(h.commissioned, 0)::BIGINT AS commissioned,
                  coalesce(h.shipped, 0)::BIGINT AS shipped,
                  coalesce(h.decommissioned, 0)::BIGINT AS decommissioned
           FROM pairs p JOIN cmos c ON c.cmo_id = p.cmo_id
           LEFT JOIN products pr ON pr.product_code = p.product_code
           LEFT JOIN held h ON h.cmo_id = p.cmo_id AND h.product_code = p.product_code
           LEFT JOIN avail a ON a.product_code = p.product_code
           WHERE NOT c.deleted OR coalesce(h.left_pool, 0) > 0
           ORDER BY c.cmo_id, p.product_code"""
    ).pl()


def exported_files_report(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """`exported_files.csv`: every export file, newest first."""
    return con.execute(
        """SELECT cmo_id, file_name, product_code, count,
                  strftime(created, '%Y-%m-%dT%H:%M:%S') AS created,
                  CASE WHEN can_contain_duplicates THEN 'Y' ELSE 'N' END AS can_contain_duplicates
           FROM outbox_files WHERE kind = 'export' ORDER BY created DESC, file_id DESC"""
    ).pl()


def pool_sizes(con: duckdb.DuckDBPyConnection) -> dict[int, int]:
    """pid -> serials the product has: where a run's new arrivals start."""
    return {
        int(r[0]): int(r[1])
        for r in con.execute("SELECT pid, size FROM serial_products").fetchall()
    }


def _new_serials_unique(
    con: duckdb.DuckDBPyConnection, since: dict[int, int], key: str = "hash(pid, num, txt)"
) -> bool:
    """Every serial that arrived since `since` (pid -> size then) is unique in its product.

    The new serials (a product's arrival numbers from its size then on: stored
    together, so DuckDB reads only their blocks) are checked against each other by a
    64-bit `key` of each (DuckDB's hash of the product and the stored serial: a number,
    no string to read or hash, for a serial stored as one), distinct keys, distinct
    serials, counted in Polars on the integers alone.  Only keys that repeat
    have their serials compared, so a hash collision is no repeat.  Then the product's
    older serials probe the new ones, in DuckDB (the new ones are hashed, nothing of the
    history is copied out or held), so the check costs the night's serials plus one
    read of the older serials of the products that grew.  Serials never change once
    stored, so products that did not grow need no check.
    """
    sizes = pool_sizes(con)
    grew = sorted(
        (pid, since.get(pid, 0)) for pid, size in sizes.items() if size > since.get(pid, 0)
    )
    # a few products at a time: each product is one filtered scan (a conjunction on pid
    # and pseq: DuckDB skips the blocks outside it by their min/max), and a statement of
    # hundreds of scans joined to hundreds more costs seconds to plan and runs out of
    # memory (a pool file of 500 products); serials of different products never repeat
    return all(
        _grown_serials_unique(con, grew[at : at + _PRODUCTS_PER_CHECK], key)
        for at in range(0, len(grew), _PRODUCTS_PER_CHECK)
    )


_PRODUCTS_PER_CHECK = 16


def _grown_serials_unique(
    con: duckdb.DuckDBPyConnection, grew: list[tuple[int, int]], key: str
) -> bool:
    """`_new_serials_unique` for a few products: (pid, its size at the run's start)."""
    new = " UNION ALL ".join(
        f"SELECT pid, num, txt FROM pool WHERE pid = {int(pid)} AND pseq >= {int(lo)}"
        for pid, lo in grew
    )
    keys = con.execute(f"SELECT {key} AS k FROM ({new})").pl().to_series()
    if keys.n_unique() != keys.len():  # only the repeated keys' serials are compared
        con.register("_suspect_keys", pl.DataFrame({"k": keys.filter(keys.is_duplicated())}))
        try:
            ((repeats,),) = con.execute(
                f"""SELECT count(*) FROM (
                    SELECT pid, num, txt FROM ({new})
                    WHERE {key} IN (SELECT k FROM _suspect_keys)
                    GROUP BY ALL HAVING count(*) > 1)"""
            ).fetchall()
        finally:
            con.unregister("_suspect_keys")
        if repeats:
            return False
    old = " UNION ALL ".join(
        f"SELECT pid, num, txt FROM pool WHERE pid = {int(pid)} AND pseq < {int(lo)}"
        for pid, lo in grew
        if lo > 0
    )
    if not old:
        return True
    ((repeats,),) = con.execute(
        f"""SELECT count(*) FROM ({old}) o SEMI JOIN ({new}) n
            ON n.pid = o.pid AND {same_serial_sql("o", "n.num", "n.txt")}"""
    ).fetchall()
    return repeats == 0


def _runs_partition_pool(con: duckdb.DuckDBPyConnection) -> bool:
    """The runs of each product cover its serials 0 .. size-1 exactly once."""
    row = con.execute(
        """WITH r AS (
               SELECT pid, lo, hi, lag(hi) OVER (PARTITION BY pid ORDER BY lo) AS prev_hi,
                      row_number() OVER (PARTITION BY pid ORDER BY lo) AS k
               FROM serial_runs),
           bad_runs AS (
               SELECT count(*) AS n FROM r
               WHERE hi <= lo OR (k = 1 AND lo <> 0) OR (k > 1 AND lo <> prev_hi)),
           ends AS (SELECT pid, max(hi) AS top, count(*) AS runs FROM serial_runs GROUP BY pid)
           SELECT (SELECT n FROM bad_runs)
                  + (SELECT count(*) FROM serial_products sp LEFT JOIN ends e ON e.pid = sp.pid
                     WHERE coalesce(e.top, 0) <> sp.size)
                  + (SELECT count(*) FROM ends e WHERE e.pid NOT IN (SELECT pid FROM serial_products))"""
    ).fetchone()
    return bool(row and row[0] == 0)


def serial_invariants(
    con: duckdb.DuckDBPyConnection, balance: pl.DataFrame, since: dict[int, int] | None = None
) -> dict[str, bool]:
    """§8 invariants of the serial side, checked against the state.

    `since` (pid -> pool size at the start of the run) limits the uniqueness check
    to the products that received serials in this run; None checks every product.
    """
    unique = _new_serials_unique(con, since or {}) and _runs_partition_pool(con)
    orphan = con.execute(
        """SELECT count(*) FROM serial_runs s WHERE s.cmo_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM cmos c WHERE c.cmo_id = s.cmo_id)"""
    ).fetchone()
    # the serials of every CMO not deleted, and those of a deleted CMO's products that it
    # holds serials of that left the pool (the rows §4.2 keeps)
    totals = con.execute(
        f"""WITH kept AS (
               SELECT s.cmo_id, s.pid FROM serial_runs s JOIN cmos c ON c.cmo_id = s.cmo_id
               GROUP BY ALL HAVING NOT any_value(c.deleted) OR bool_or({LEFT_POOL}))
           SELECT coalesce(sum(s.hi - s.lo) FILTER (WHERE s.request_id IS NULL), 0),
                  coalesce(sum(s.hi - s.lo) FILTER (WHERE s.request_id IS NULL AND s.export_count = 0
                                   AND NOT s.commissioned AND NOT s.shipped
                                   AND NOT s.decommissioned), 0)
           FROM serial_runs s SEMI JOIN kept k ON k.cmo_id = s.cmo_id AND k.pid = s.pid"""
    ).fetchone()
    reported_assigned = int(balance.get_column("assigned").sum()) if balance.height else 0
    reported_ane = int(balance.get_column("assigned_not_exported").sum()) if balance.height else 0
    assigned_not_negative = bool(
        balance.height == 0
        or balance.select(
            (pl.col("assigned") >= pl.col("assigned_not_exported")).all()
            & (pl.col("assigned") >= pl.col("exported")).all()
        ).item()
    )
    return {
        "serial_unique_per_product": unique,
        "assigned_serials_belong_to_a_cmo": bool(orphan and orphan[0] == 0),
        "reported_counts_equal_state": bool(
            totals is not None
            and int(totals[0]) == reported_assigned
            and int(totals[1]) == reported_ane
            and assigned_not_negative
        ),
    }
