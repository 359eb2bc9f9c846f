"""The state store's tables of the TraceLink shipping side (SPEC §6, §10).

`connectors.store` runs `SHIPPING_DDL` at start-up next to `SERIAL_DDL`.  The
serial outcomes themselves live in `serial_runs` (commissioned, shipped, lot, expiry);
these tables keep what a later document needs:

- `shipping_aggregation` — the packaging hierarchy as it stands after every
  document applied so far, one row per packed EPC (a child has one parent at a
  time), per sender CMO.  A shipping-only document expands its SSCCs with it.
  Each EPC is kept as written and by its identity key
  (`transforms.epc.epc_key_sql`), which the rules join on; a store written
  before the keys existed gets them when it is opened.
- `shipping_exception_log` — every non-`OK` serial outcome ever reported, with the
  lot of the commissioning ILMD, for the `exceptions` column of
  `lot_reconciliation.csv` (a state report).
"""

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
    # EPC text (parsed again when a later document expands a stored child) and keys.
    """CREATE TABLE IF NOT EXISTS shipping_aggregation (
        cmo_id VARCHAR NOT NULL,       -- the document's sender
        child VARCHAR NOT NULL,        -- EPC URI as written (trimmed)
        parent VARCHAR NOT NULL,
        child_key UHUGEINT, parent_key UHUGEINT)""",
    "ALTER TABLE shipping_aggregation ADD COLUMN IF NOT EXISTS child_key UHUGEINT",
    "ALTER TABLE shipping_aggregation ADD COLUMN IF NOT EXISTS parent_key UHUGEINT",
    _backfill_keys("child"),
    _backfill_keys("parent"),
    """CREATE TABLE IF NOT EXISTS shipping_exception_log (
        run_id VARCHAR NOT NULL, file VARCHAR NOT NULL, cmo_id VARCHAR,
        event_index INTEGER, event_kind VARCHAR, product_code VARCHAR, serial VARCHAR,
        epc VARCHAR, outcome VARCHAR NOT NULL, lot VARCHAR, expiry DATE)""",
]
