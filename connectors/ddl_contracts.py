"""The state store's Contract Managed Inventory tables (DuckDB), SPEC §7.

Quantities: `contract_quantity` and the reception quantities are kept in
contract units as given; `received`, `ncc` and `consumed` on a line are kept in
stock units (contract units x `unit_factor`), the unit of the balance report.
No primary keys on the big tables: uniqueness is checked set-based by
anti-joins, which keeps a million order lines a night cheap to insert.
"""

CONTRACT_DDL: list[str] = [
    # Contract key values: one row per customer that a key admits (§7.1).
    """CREATE TABLE IF NOT EXISTS contract_keys (
        contract_key VARCHAR NOT NULL, customer VARCHAR NOT NULL,
        PRIMARY KEY (contract_key, customer))""",
    # Contract headers (§7.1); a delete removes the row (only allowed while unused).
    """CREATE TABLE IF NOT EXISTS contracts (
        contract_id VARCHAR PRIMARY KEY,
        description VARCHAR NOT NULL,
        contract_type VARCHAR NOT NULL,      -- CDS SCS WCS WDS CBS WBS DIS
        logistic BOOLEAN NOT NULL,           -- SCS logistic handling only
        customer VARCHAR, contract_key VARCHAR, supplier VARCHAR,
        currency VARCHAR NOT NULL, handler VARCHAR NOT NULL, responsible VARCHAR NOT NULL,
        cost_centre VARCHAR, warehouse VARCHAR NOT NULL,
        off_contract_sales BOOLEAN NOT NULL,
        start_date DATE, end_date DATE,
        active BOOLEAN NOT NULL, activated_at TIMESTAMP,
        status VARCHAR NOT NULL)             -- N O C (§7.3)""",
    # Contract lines (§7.2) with their initialization and consumption state (§7.3-§7.5).
    """CREATE TABLE IF NOT EXISTS contract_lines (
        contract_id VARCHAR NOT NULL, line_no BIGINT NOT NULL,
        item VARCHAR NOT NULL,
        contract_quantity BIGINT,            -- contract units; NULL = no limit
        contract_unit VARCHAR NOT NULL, unit_factor BIGINT NOT NULL,
        cost_price VARCHAR, sales_price VARCHAR, purchase_price VARCHAR,
        start_date DATE, end_date DATE,
        auto_assign BOOLEAN NOT NULL,
        warehouse VARCHAR,                   -- as given; NULL = the header's
        status VARCHAR NOT NULL,             -- N O C (§7.3)
        initialized BOOLEAN NOT NULL,
        reception_date DATE,
        received BIGINT NOT NULL,            -- stock units
        ncc BIGINT NOT NULL,                 -- stock units, never available
        consumed BIGINT NOT NULL,            -- stock units
        receptions BIGINT NOT NULL,          -- receptions that refer to the line
        order_lines BIGINT NOT NULL,         -- sales order lines linked to the line
        reserved_for VARCHAR,                -- CBS: customer of the type-60 reservation
        PRIMARY KEY (contract_id, line_no))""",
    # Every applied reception (§7.4), for CMI-MULT sums and CMI-BATH batches.
    """CREATE TABLE IF NOT EXISTS contract_receptions (
        run_id VARCHAR NOT NULL, source_file VARCHAR NOT NULL, line BIGINT,
        contract_id VARCHAR NOT NULL, line_no BIGINT NOT NULL,
        quantity BIGINT NOT NULL,            -- contract units
        ncc_quantity BIGINT NOT NULL,        -- contract units
        receipt_date DATE NOT NULL, process VARCHAR NOT NULL,
        supply_order VARCHAR, batch VARCHAR)""",
    # Every sales order line ever applied: (order_no, order_line) is unique for ever (§7.5).
    """CREATE TABLE IF NOT EXISTS contract_order_lines (
        order_no VARCHAR NOT NULL, order_line BIGINT NOT NULL,
        run_id VARCHAR NOT NULL, source_file VARCHAR,
        contract_id VARCHAR, line_no BIGINT)""",
    # The contract log (§7.3); `seq` orders it; a run's rows make contract_log.csv.
    """CREATE TABLE IF NOT EXISTS contract_log (
        seq BIGINT NOT NULL, run_id VARCHAR NOT NULL, logged_at TIMESTAMP NOT NULL,
        contract_id VARCHAR NOT NULL, line_no BIGINT,
        event VARCHAR NOT NULL, order_type VARCHAR, order_no VARCHAR,
        quantity BIGINT, source_file VARCHAR)""",
    # The run's allocation of order lines (§7.5); a run's rows make allocations.csv.
    """CREATE TABLE IF NOT EXISTS contract_allocations (
        run_id VARCHAR NOT NULL, seq BIGINT NOT NULL,
        order_no VARCHAR NOT NULL, order_line BIGINT NOT NULL, order_date DATE NOT NULL,
        customer VARCHAR NOT NULL, item VARCHAR NOT NULL, quantity BIGINT NOT NULL,
        contract_id VARCHAR, line_no BIGINT, reason VARCHAR, detail VARCHAR,
        source_file VARCHAR, line BIGINT)""",
]
