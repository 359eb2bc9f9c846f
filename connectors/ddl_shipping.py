"""The state store's tables of the TraceLink shipping side (SPEC §6, §10).

`connectors.store` runs `SHIPPING_DDL` at start-up next to `SERIAL_DDL`.  The
serial outcomes themselves live in `serial_runs` (commissioned, shipped, lot, expiry);
these tables keep what a later document needs:

- `shipping_aggregation` — the packaging hierarchy as it stands after every
  document applied so far, one row per packed EPC (a child has one parent at a
  time), per sender CMO.  A shipping-only document expands its SSCCs with it.
- `shipping_exception_log` — every non-`OK` serial outcome ever reported, with the
  lot of the commissioning ILMD, for the `exceptions` column of
  `lot_reconciliation.csv` (a state report).
"""

SHIPPING_DDL = [
    # EPC text only (parsed again when a later document expands it): three narrow
    # columns keep the write of a million links per document cheap.
    """CREATE TABLE IF NOT EXISTS shipping_aggregation (
        cmo_id VARCHAR NOT NULL,       -- the document's sender
        child VARCHAR NOT NULL,        -- EPC URI as written (trimmed)
        parent VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS shipping_exception_log (
        run_id VARCHAR NOT NULL, file VARCHAR NOT NULL, cmo_id VARCHAR,
        event_index INTEGER, event_kind VARCHAR, product_code VARCHAR, serial VARCHAR,
        epc VARCHAR, outcome VARCHAR NOT NULL, lot VARCHAR, expiry DATE)""",
]
