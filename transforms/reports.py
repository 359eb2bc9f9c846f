"""The serial side's state reports and invariants (SPEC §8, §10), as frames.

Every report is a frame of strings/integers with exactly the §10 columns, in a
deterministic order; the outbox connector writes it.
"""

from __future__ import annotations

import duckdb
import polars as pl

CMOS_COLUMNS = [
    "cmo_id", "cmo_name", "street1", "street2", "street3", "city", "state", "zip_code",
    "country", "produceable_products", "collaboration_channel", "sgln", "partnership_status",
    "contact_email", "tenant", "payment_model", "deleted",
]  # fmt: skip
SERIAL_BALANCE_COLUMNS = [
    "cmo_id", "cmo_name", "product_code", "product_name", "available", "assigned",
    "assigned_not_exported", "exported", "requested", "commissioned", "shipped",
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


def serial_balance_report(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """`serial_balance.csv`: one row per produceable product of each CMO not deleted, plus
    every (CMO, product) that holds serials; counts as defined in §5."""
    return con.execute(
        """WITH held AS (
               SELECT cmo_id, product_code,
                      count(*) FILTER (WHERE request_id IS NULL) AS assigned,
                      count(*) FILTER (WHERE request_id IS NULL AND export_count = 0
                                       AND NOT commissioned AND NOT shipped) AS assigned_not_exported,
                      count(*) FILTER (WHERE request_id IS NULL AND export_count > 0) AS exported,
                      count(*) FILTER (WHERE request_id IS NOT NULL) AS requested,
                      count(*) FILTER (WHERE commissioned) AS commissioned,
                      count(*) FILTER (WHERE shipped) AS shipped
               FROM serials WHERE cmo_id IS NOT NULL GROUP BY cmo_id, product_code),
           avail AS (
               SELECT product_code, count(*) AS available FROM serials
               WHERE cmo_id IS NULL GROUP BY product_code),
           pairs AS (
               SELECT cmo_id, product_code FROM cmo_products
               UNION SELECT cmo_id, product_code FROM held)
           SELECT c.cmo_id, c.cmo_name, p.product_code, pr.product_name,
                  coalesce(a.available, 0) AS available,
                  coalesce(h.assigned, 0) AS assigned,
                  coalesce(h.assigned_not_exported, 0) AS assigned_not_exported,
                  coalesce(h.exported, 0) AS exported,
                  coalesce(h.requested, 0) AS requested,
                  coalesce(h.commissioned, 0) AS commissioned,
                  coalesce(h.shipped, 0) AS shipped
           FROM pairs p JOIN cmos c ON c.cmo_id = p.cmo_id AND NOT c.deleted
           LEFT JOIN products pr ON pr.product_code = p.product_code
           LEFT JOIN held h ON h.cmo_id = p.cmo_id AND h.product_code = p.product_code
           LEFT JOIN avail a ON a.product_code = p.product_code
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


def _newest_sid(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT max(sid) FROM serials").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def serial_invariants(
    con: duckdb.DuckDBPyConnection, balance: pl.DataFrame, since_sid: int | None = None
) -> dict[str, bool]:
    """§8 invariants of the serial side, checked against the state.

    With `since_sid`, a night without new serials (none at or after `since_sid`)
    skips the uniqueness check: (product_code, serial) never changes once stored.
    """
    if since_sid is not None and _newest_sid(con) < since_sid:
        dup: tuple[int] | None = (0,)  # no serial arrived in this run
    else:
        # Hash every (product, serial) to 64 bits and group the integers; only hash
        # collisions are compared as strings, so the answer is exact and cheap.
        dup = con.execute(
            """WITH twice AS (
                   SELECT hash(product_code, serial) AS h FROM serials
                   GROUP BY h HAVING count(*) > 1)
               SELECT count(*) FROM (
                   SELECT product_code, serial FROM serials
                   WHERE hash(product_code, serial) IN (SELECT h FROM twice)
                   GROUP BY ALL HAVING count(*) > 1)"""
        ).fetchone()
    orphan = con.execute(
        """SELECT count(*) FROM serials s WHERE s.cmo_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM cmos c WHERE c.cmo_id = s.cmo_id)"""
    ).fetchone()
    totals = con.execute(
        """SELECT count(*) FILTER (WHERE s.request_id IS NULL),
                  count(*) FILTER (WHERE s.request_id IS NULL AND s.export_count = 0
                                   AND NOT s.commissioned AND NOT s.shipped)
           FROM serials s JOIN cmos c ON c.cmo_id = s.cmo_id AND NOT c.deleted"""
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
        "serial_unique_per_product": bool(dup and dup[0] == 0),
        "assigned_serials_belong_to_a_cmo": bool(orphan and orphan[0] == 0),
        "reported_counts_equal_state": bool(
            totals is not None
            and int(totals[0]) == reported_assigned
            and int(totals[1]) == reported_ane
            and assigned_not_negative
        ),
    }
