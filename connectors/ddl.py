"""The state store's tables (DuckDB).  One place for the serial side's DDL.

Other sides (contracts, shipping) keep their DDL beside it in `ddl_contracts.py`
and `ddl_shipping.py`; `connectors.store` creates all of them.
"""

SERIAL_DDL = [
    """CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, as_of TIMESTAMP, started_at TIMESTAMP, finished_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS processed_files (
        sha256 VARCHAR, kind VARCHAR, name VARCHAR, run_id VARCHAR, outcome VARCHAR,
        PRIMARY KEY (kind, sha256))""",
    """CREATE TABLE IF NOT EXISTS products (
        product_code VARCHAR PRIMARY KEY, product_name VARCHAR NOT NULL, stock_unit VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cmos (
        cmo_id VARCHAR PRIMARY KEY, cmo_name VARCHAR, street1 VARCHAR, street2 VARCHAR,
        street3 VARCHAR, city VARCHAR, state VARCHAR, zip_code VARCHAR, country VARCHAR,
        collaboration_channel VARCHAR, sgln VARCHAR,
        partnership_status VARCHAR NOT NULL DEFAULT 'none', contact_email VARCHAR,
        tenant VARCHAR, payment_model VARCHAR, deleted BOOLEAN NOT NULL DEFAULT FALSE)""",
    # produceable products of a CMO, in the order the file listed them
    """CREATE TABLE IF NOT EXISTS cmo_products (
        cmo_id VARCHAR NOT NULL, product_code VARCHAR NOT NULL, pos INTEGER NOT NULL)""",
    # One row per serial ever known.  No index: uniqueness is checked set-based by
    # anti-joins, which keeps loading tens of millions of serials fast and small.
    """CREATE TABLE IF NOT EXISTS serials (
        sid BIGINT NOT NULL,             -- arrival order in the pool (FIFO), global
        product_code VARCHAR NOT NULL,
        serial VARCHAR NOT NULL,
        source VARCHAR NOT NULL,         -- 'pool' | 'generated'
        cmo_id VARCHAR,                  -- holder; NULL = available in the pool
        assign_seq BIGINT,               -- order of assignment; NULL when available
        export_count INTEGER NOT NULL DEFAULT 0,
        last_export_id BIGINT,           -- outbox file id of the latest export
        request_id VARCHAR,              -- partner request that took it (no longer 'assigned')
        commissioned BOOLEAN NOT NULL DEFAULT FALSE,
        shipped BOOLEAN NOT NULL DEFAULT FALSE,
        lot VARCHAR,                     -- commissioning ILMD (SPEC §6)
        expiry DATE)""",
    # Every export file and partner answer, recorded with its serials in the same
    # transaction as the serial status change; materialised afterwards (SPEC §8).
    """CREATE TABLE IF NOT EXISTS outbox_files (
        file_id BIGINT PRIMARY KEY, kind VARCHAR NOT NULL,  -- 'export' | 'partner'
        cmo_id VARCHAR NOT NULL, product_code VARCHAR NOT NULL, rel_path VARCHAR NOT NULL,
        file_name VARCHAR NOT NULL, count BIGINT NOT NULL, created TIMESTAMP NOT NULL,
        can_contain_duplicates BOOLEAN NOT NULL, request_id VARCHAR, quantity BIGINT,
        run_id VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS outbox_items (
        file_id BIGINT NOT NULL, ord BIGINT NOT NULL, product_code VARCHAR NOT NULL, serial VARCHAR NOT NULL)""",
    """CREATE SEQUENCE IF NOT EXISTS seq_sid START 1""",
    """CREATE SEQUENCE IF NOT EXISTS seq_assign START 1""",
    """CREATE SEQUENCE IF NOT EXISTS seq_outbox_file START 1""",
]
