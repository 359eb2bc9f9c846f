"""Contracts of the Contract Managed Inventory files and reports (SPEC §7, §10).

Inbox models (every column `str`; per-row format rules as Pandera checks):
`ContractKeysFile`, `ContractsFile`, `ContractLinesFile`, `ReceiptsFile`,
`OrdersFile`.  Rules that depend on the contract type, on another column or on
the state ("required for upsert", "only for SCS", "must exist") are applied in
`transforms.contracts` / `transforms.allocation`, where they can name the state.

Report models: `ContractsReport`, `ContractBalanceReport`, `ContractLogReport`,
`AllocationsReport` — the columns of §10, in order.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from schemas import checks
from schemas.base import optional, required, valid_where
from transforms.codes import is_bool_expr, is_date_expr, is_gtin14_expr, is_positive_int_expr

CONTRACT_TYPES = ("CDS", "SCS", "WCS", "WDS", "CBS", "WBS", "DIS")
PROCESSES = ("supply_deposit", "supply", "external_supply", "internal_supply")
CODE_PATTERN = r"^[^\x00-\x1f\x7f]{1,255}$"
"""Contract ids, keys, customers, suppliers, warehouses, order and supply order numbers: any
text of at most 255 characters without control characters (§7 sets no format; `Hospital A`
and `PO 123` are codes the ERP may well use).  Only identifiers that become file names
(`cmo_id`, `request_id`, §3.1) have a stricter alphabet."""
PRICE_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,6})?$"

_CODE_MSG = "is not a code: at most 255 characters, without control characters (tabs, line breaks)"


def _code(data):  # type: ignore[no-untyped-def]
    return valid_where(data, pl.col(data.key).str.contains(CODE_PATTERN))


def _bool(data):  # type: ignore[no-untyped-def]
    return valid_where(data, is_bool_expr(pl.col(data.key)))


def _date(data):  # type: ignore[no-untyped-def]
    return valid_where(data, is_date_expr(pl.col(data.key)))


def _positive_int(data):  # type: ignore[no-untyped-def]
    return valid_where(data, is_positive_int_expr(pl.col(data.key)))


def _non_negative_int(data):  # type: ignore[no-untyped-def]
    return valid_where(data, pl.col(data.key).str.contains(r"^[0-9]{1,18}$"))


def _price(data):  # type: ignore[no-untyped-def]
    return valid_where(data, pl.col(data.key).str.contains(PRICE_PATTERN))


def _action(data):  # type: ignore[no-untyped-def]
    return valid_where(data, pl.col(data.key).str.to_lowercase().is_in(["upsert", "delete"]))


def _gtin(data):  # type: ignore[no-untyped-def]
    return valid_where(data, is_gtin14_expr(pl.col(data.key)))


class ContractKeysFile(pa.DataFrameModel):
    """`contract_keys_*.csv` (§7.1): one row per customer that a contract key admits."""

    contract_key: str = required()
    customer: str = required()

    @pa.check("contract_key", "customer", error=f"code|'{{value}}' {_CODE_MSG}")
    def _codes(cls, data):  # type: ignore[no-untyped-def]
        return _code(data)


class ContractsFile(pa.DataFrameModel):
    """`contracts_*.csv` (§7.1): inventory contract headers."""

    action: str = optional()
    contract_id: str = required()
    description: str = optional()
    contract_type: str = optional()
    logistic: str = optional()
    customer: str = optional()
    contract_key: str = optional()
    supplier: str = optional()
    currency: str = optional()
    handler: str = optional()
    responsible: str = optional()
    cost_centre: str = optional()
    warehouse: str = optional()
    off_contract_sales: str = optional()
    start_date: str = optional()
    end_date: str = optional()
    active: str = optional()

    @pa.check("action", error="action|action '{value}' must be upsert or delete")
    def _action(cls, data):  # type: ignore[no-untyped-def]
        return _action(data)

    @pa.check(
        "contract_id", "customer", "contract_key", "supplier", "warehouse",
        error=f"code|'{{value}}' {_CODE_MSG}",
    )  # fmt: skip
    def _codes(cls, data):  # type: ignore[no-untyped-def]
        return _code(data)

    @pa.check("description", error="length|description must have 1 to 100 characters")
    def _description(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, pl.col(data.key).str.len_chars() <= 100)

    @pa.check(
        "contract_type",
        error="contract_type|contract_type '{value}' must be one of " + ", ".join(CONTRACT_TYPES),
    )
    def _contract_type(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, pl.col(data.key).str.to_uppercase().is_in(CONTRACT_TYPES))

    @pa.check(
        "logistic",
        "off_contract_sales",
        "active",
        error="boolean|'{value}' is not Y/N, YES/NO, TRUE/FALSE or 1/0",
    )
    def _booleans(cls, data):  # type: ignore[no-untyped-def]
        return _bool(data)

    @pa.check(
        "currency",
        error="currency|currency '{value}' is not an ISO 4217 currency code (e.g. EUR, USD, CHF)",
    )
    def _currency(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.currency(pl.col(data.key)))

    @pa.check("start_date", "end_date", error="date|'{value}' is not a date YYYY-MM-DD")
    def _dates(cls, data):  # type: ignore[no-untyped-def]
        return _date(data)


class ContractLinesFile(pa.DataFrameModel):
    """`contract_lines_*.csv` (§7.2): the items, quantities and validity of a contract."""

    action: str = optional()
    contract_id: str = required()
    line_no: str = required()
    item: str = optional()
    contract_quantity: str = optional()
    contract_unit: str = optional()
    unit_factor: str = optional()
    cost_price: str = optional()
    sales_price: str = optional()
    purchase_price: str = optional()
    start_date: str = optional()
    end_date: str = optional()
    auto_assign: str = optional()
    warehouse: str = optional()
    status: str = optional()

    @pa.check("action", error="action|action '{value}' must be upsert or delete")
    def _action(cls, data):  # type: ignore[no-untyped-def]
        return _action(data)

    @pa.check("contract_id", "warehouse", error=f"code|'{{value}}' {_CODE_MSG}")
    def _codes(cls, data):  # type: ignore[no-untyped-def]
        return _code(data)

    @pa.check(
        "line_no",
        "contract_quantity",
        "unit_factor",
        error="positive_int|'{value}' is not a positive whole number (digits only, at most 18 digits)",
    )
    def _positive(cls, data):  # type: ignore[no-untyped-def]
        return _positive_int(data)

    @pa.check(
        "item",
        error="gtin14|item '{value}' is not a GTIN-14 (14 digits with a valid GS1 check digit)",
    )
    def _item(cls, data):  # type: ignore[no-untyped-def]
        return _gtin(data)

    @pa.check(
        "contract_unit", error="unit|contract_unit '{value}' must have 1 to 10 letters or digits"
    )
    def _unit(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, pl.col(data.key).str.contains(r"^[A-Za-z0-9]{1,10}$"))

    @pa.check(
        "cost_price",
        "sales_price",
        "purchase_price",
        error="price|'{value}' is not a price (digits with an optional decimal point, e.g. 12.50)",
    )
    def _prices(cls, data):  # type: ignore[no-untyped-def]
        return _price(data)

    @pa.check("start_date", "end_date", error="date|'{value}' is not a date YYYY-MM-DD")
    def _dates(cls, data):  # type: ignore[no-untyped-def]
        return _date(data)

    @pa.check("auto_assign", error="boolean|'{value}' is not Y/N, YES/NO, TRUE/FALSE or 1/0")
    def _auto_assign(cls, data):  # type: ignore[no-untyped-def]
        return _bool(data)

    @pa.check("status", error="status|status '{value}' must be C (close the line) or O (open it)")
    def _status(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, pl.col(data.key).str.to_uppercase().is_in(["C", "O"]))


class ReceiptsFile(pa.DataFrameModel):
    """`receipts_*.csv` (§7.4): receptions that initialize CDS, SCS, WCS and WDS lines."""

    contract_id: str = required()
    line_no: str = required()
    quantity: str = required()
    receipt_date: str = required()
    process: str = required()
    supply_order: str = optional()
    batch: str = optional()
    ncc_quantity: str = optional()

    @pa.check("contract_id", "supply_order", error=f"code|'{{value}}' {_CODE_MSG}")
    def _codes(cls, data):  # type: ignore[no-untyped-def]
        return _code(data)

    @pa.check(
        "line_no",
        "quantity",
        error="positive_int|'{value}' is not a positive whole number (digits only, at most 18 digits)",
    )
    def _positive(cls, data):  # type: ignore[no-untyped-def]
        return _positive_int(data)

    @pa.check("ncc_quantity", error="non_negative_int|'{value}' is not a whole number (0 or more)")
    def _ncc(cls, data):  # type: ignore[no-untyped-def]
        return _non_negative_int(data)

    @pa.check("receipt_date", error="date|'{value}' is not a date YYYY-MM-DD")
    def _date(cls, data):  # type: ignore[no-untyped-def]
        return _date(data)

    @pa.check("process", error="process|process '{value}' must be one of " + ", ".join(PROCESSES))
    def _process(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, pl.col(data.key).str.to_lowercase().is_in(PROCESSES))

    @pa.check("batch", error="batch|batch '{value}' must have 1 to 20 characters")
    def _batch(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, pl.col(data.key).str.len_chars() <= 20)


class OrdersFile(pa.DataFrameModel):
    """`orders_*.csv` (§7.5): sales order lines to allocate to contract lines."""

    order_no: str = required()
    order_line: str = required()
    order_date: str = required()
    customer: str = required()
    item: str = required()
    quantity: str = required()
    warehouse: str = optional()
    contract_id: str = optional()
    line_no: str = optional()

    @pa.check(
        "order_no", "customer", "warehouse", "contract_id", error=f"code|'{{value}}' {_CODE_MSG}"
    )
    def _codes(cls, data):  # type: ignore[no-untyped-def]
        return _code(data)

    @pa.check(
        "order_line",
        "quantity",
        "line_no",
        error="positive_int|'{value}' is not a positive whole number (digits only, at most 18 digits)",
    )
    def _positive(cls, data):  # type: ignore[no-untyped-def]
        return _positive_int(data)

    @pa.check("order_date", error="date|'{value}' is not a date YYYY-MM-DD")
    def _date(cls, data):  # type: ignore[no-untyped-def]
        return _date(data)

    @pa.check(
        "item",
        error="gtin14|item '{value}' is not a GTIN-14 (14 digits with a valid GS1 check digit)",
    )
    def _item(cls, data):  # type: ignore[no-untyped-def]
        return _gtin(data)


# --- reports (§10) --------------------------------------------------------------------------

_YN = ["Y", "N"]
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


class ContractsReport(pa.DataFrameModel):
    """`contracts.csv` (§10, state)."""

    contract_id: str = pa.Field(unique=True)
    description: str
    contract_type: str = pa.Field(isin=list(CONTRACT_TYPES))
    logistic: str = pa.Field(isin=_YN)
    customer: str = pa.Field(nullable=True)
    contract_key: str = pa.Field(nullable=True)
    supplier: str = pa.Field(nullable=True)
    currency: str
    warehouse: str
    off_contract_sales: str = pa.Field(isin=_YN)
    start_date: str = pa.Field(nullable=True, str_matches=_ISO_DATE)
    end_date: str = pa.Field(nullable=True, str_matches=_ISO_DATE)
    active: str = pa.Field(isin=_YN)
    activated_at: str = pa.Field(nullable=True)
    status: str = pa.Field(isin=["N", "O", "C"])

    class Config:
        strict = True
        ordered = True


class ContractBalanceReport(pa.DataFrameModel):
    """`contract_balance.csv` (§10, state): one row per contract line, quantities in stock units."""

    contract_id: str
    line_no: int = pa.Field(gt=0)
    contract_type: str = pa.Field(isin=list(CONTRACT_TYPES))
    item: str
    warehouse: str
    customer: str = pa.Field(nullable=True)
    status: str = pa.Field(isin=["N", "O", "C"])
    contract_quantity: int = pa.Field(nullable=True, gt=0)
    contract_unit: str
    unit_factor: int = pa.Field(gt=0)
    received: int = pa.Field(ge=0)
    ncc: int = pa.Field(ge=0)
    consumed: int = pa.Field(ge=0)
    available: int = pa.Field(ge=0)
    reception_date: str = pa.Field(nullable=True, str_matches=_ISO_DATE)
    start_date: str = pa.Field(nullable=True, str_matches=_ISO_DATE)
    end_date: str = pa.Field(nullable=True, str_matches=_ISO_DATE)
    expired: str = pa.Field(isin=_YN)
    auto_assign: str = pa.Field(isin=_YN)

    class Config:
        strict = True
        ordered = True


class ContractLogReport(pa.DataFrameModel):
    """`contract_log.csv` (§10, run): the log events of the run, in order."""

    logged_at: str
    contract_id: str
    line_no: int = pa.Field(nullable=True)
    event: str
    order_type: str = pa.Field(nullable=True, isin=["S", "P"])
    order_no: str = pa.Field(nullable=True)
    quantity: int = pa.Field(nullable=True)
    source_file: str = pa.Field(nullable=True)

    class Config:
        strict = True
        ordered = True


class AllocationsReport(pa.DataFrameModel):
    """`allocations.csv` (§10, run): every order line of the run, linked or with its reason."""

    order_no: str
    order_line: int = pa.Field(gt=0)
    order_date: str = pa.Field(str_matches=_ISO_DATE)
    customer: str
    item: str
    quantity: int = pa.Field(gt=0)
    contract_id: str = pa.Field(nullable=True)
    line_no: int = pa.Field(nullable=True)
    reason: str = pa.Field(nullable=True)
    detail: str = pa.Field(nullable=True)

    class Config:
        strict = True
        ordered = True


REPORT_COLUMNS: dict[str, list[str]] = {
    "contracts.csv": list(ContractsReport.to_schema().columns),
    "contract_balance.csv": list(ContractBalanceReport.to_schema().columns),
    "contract_log.csv": list(ContractLogReport.to_schema().columns),
    "allocations.csv": list(AllocationsReport.to_schema().columns),
}
"""The §10 columns of each contract report, in order."""
