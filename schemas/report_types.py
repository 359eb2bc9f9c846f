"""What each column of the CSV reports holds, for the reports people look at (SPEC §10,
§10.1): which are quantities (integers), dates and date-times.  Every other column is
text — names, sentences and codes (product codes, serials, ids, GTINs, lots, SGLNs),
which a spreadsheet must never turn into numbers.  A report added later without an
entry here is shown as text, never mangled.
"""

from __future__ import annotations

QUANTITIES = frozenset({
    # rejects, allocations, contract reports
    "line", "line_no", "order_line", "quantity", "contract_quantity", "unit_factor",
    "received", "ncc", "consumed",
    # serial balance, exported files
    "available", "assigned", "assigned_not_exported", "exported", "requested",
    "commissioned", "shipped", "decommissioned", "count",
    # shipping reports
    "events_read", "events_skipped", "ok", "unknown_serial", "already_shipped",
    "not_produceable", "not_assigned", "other_cmo", "unknown_container", "malformed_epc",
    "exceptions", "event_index",
    # deliveries
    "attempts",
})  # fmt: skip
DATES = frozenset({"order_date", "reception_date", "start_date", "end_date", "expiry"})
DATETIMES = frozenset({"created", "logged_at", "activated_at", "delivered_at"})

# the order of the §10 table; a report not named here comes after these, by name
REPORT_ORDER = [
    "rejects", "cmos", "serial_balance", "exported_files", "contracts", "contract_balance",
    "contract_log", "allocations", "shipping_reconciliation", "shipping_exceptions",
    "lot_reconciliation", "deliveries",
]  # fmt: skip
