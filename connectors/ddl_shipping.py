"""The state store's tables of the TraceLink shipping side (SPEC §6, §10).

`connectors.store` runs `SHIPPING_DDL` at start-up next to `SERIAL_DDL`.  The
serial outcomes themselves live in `serial_runs` (commissioned, shipped, lot, expiry);
these tables keep what a later document needs:

- `shipping_aggregation` — the packaging hierarchy as it stands after every
  document applied so far, one row per packed EPC (a child has one parent at a
  time), per sender CMO.  A shipping-only document expands its SSCCs with it.
  Each EPC is kept by its identity key (`transforms.epc.epc_key_sql`), which the
  rules join on; a child also as written (parsed again when a later document
  ships it).  `shipping_parents` keeps each parent's text once (a pallet or case
  holds many children), and the view `shipping_hierarchy` shows both texts.  A
  store written before the keys existed gets them when it is opened; one written
  with each parent's text on every link row has them moved.
- `shipping_exception_log` — every non-`OK` serial outcome ever reported, with the
  lot of the commissioning ILMD, for the `exceptions` column of
  `lot_reconciliation.csv` (a state report).
"""

import duckdb

from transforms.epc import epc_key_sql, parse_epcs_sql


def _backfill_keys(column: str) -> str:
    """Fill the `<column>_key` of rows stored before the keys existed (nothing to do after)."""
    texts = (
        f"(SELECT DISTINCT {column} AS epc FROM shipping_aggregation WHERE {column}_key IS NULL)"
    )
    return f"""UPDATE shipping_aggregation a SET {column}_key = k.key
        FROM (SELECT epc, {epc_key_sql()} AS key FROM ({parse_epcs_sql(texts)})) k
        WHERE a.{column}_key IS NULL AND a.{column} = k.epc"""


SHIPPING_DDL = [
    """CREATE TABLE IF NOT EXISTS shipping_aggregation (
        cmo_id VARCHAR NOT NULL,       -- the document's sender
        child VARCHAR NOT NULL USING COMPRESSION fsst,  -- EPC URI as written (trimmed)
        child_key UHUGEINT, parent_key UHUGEINT)""",
    "ALTER TABLE shipping_aggregation ADD COLUMN IF NOT EXISTS child_key UHUGEINT",
    "ALTER TABLE shipping_aggregation ADD COLUMN IF NOT EXISTS parent_key UHUGEINT",
    _backfill_keys("child"),
    """CREATE TABLE IF NOT EXISTS shipping_parents (
        cmo_id VARCHAR NOT NULL,
        parent_key UHUGEINT NOT NULL,
        parent VARCHAR NOT NULL)       -- EPC URI as last written (trimmed)""",
    """CREATE TABLE IF NOT EXISTS shipping_exception_log (
        run_id VARCHAR NOT NULL, file VARCHAR NOT NULL, cmo_id VARCHAR,
        event_index INTEGER, event_kind VARCHAR, product_code VARCHAR, serial VARCHAR,
        epc VARCHAR, outcome VARCHAR NOT NULL, lot VARCHAR, expiry DATE)""",
]
HIERARCHY_VIEW = """CREATE OR REPLACE VIEW shipping_hierarchy AS
    SELECT a.cmo_id, a.child, p.parent, a.child_key, a.parent_key
    FROM shipping_aggregation a LEFT JOIN shipping_parents p USING (cmo_id, parent_key)"""


def migrate_shipping(con: duckdb.DuckDBPyConnection) -> None:
    """After `SHIPPING_DDL`: a store that kept each parent's text on every link row (one
    written before `shipping_parents`) gets its parent keys, and the texts move to
    `shipping_parents` (one per parent); then the view."""
    (legacy,) = con.execute(
        """SELECT count(*) FROM duckdb_columns()
        WHERE database_name = current_database() AND schema_name = 'main'
          AND table_name = 'shipping_aggregation' AND column_name = 'parent'"""
    ).fetchone() or (0,)
    if legacy:  # each step is idempotent: a run stopped in between redoes what is left
        con.execute(_backfill_keys("parent"))
        con.execute(
            """INSERT INTO shipping_parents
            SELECT cmo_id, parent_key, max(parent) FROM shipping_aggregation a
            WHERE parent IS NOT NULL AND parent_key IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM shipping_parents p
                WHERE p.cmo_id = a.cmo_id AND p.parent_key = a.parent_key)
            GROUP BY ALL"""
        )
        con.execute("ALTER TABLE shipping_aggregation DROP COLUMN parent")
    con.execute(HIERARCHY_VIEW)
