"""Contract Managed Inventory master data: keys, headers, lines, receptions (SPEC §7.1-§7.4).

Each `apply_*` function takes the Pandera-validated rows of one file (strings
plus `_line`) and applies them in file order against the contract state in
DuckDB.  Contract state is small, so the contracts a file names are loaded into
Python objects, the rows are applied one by one (a row may depend on an earlier
row of the same file), and the touched contracts are written back set-based.
The caller wraps each call in one transaction.

Every violation is a rejected row whose message names the current state.
Quantities on a line: `contract_quantity` in contract units; `received`, `ncc`
and `consumed` in stock units (contract units x `unit_factor`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import duckdb
import polars as pl

from transforms.codes import parse_bool
from transforms.context import FileResult, RunContext
from transforms.rejects import REJECT_SCHEMA, empty_rejects
from transforms.state import appended_to

CUSTOMER_REQUIRED = frozenset({"CDS", "WCS", "CBS", "DIS"})
CUSTOMER_OPTIONAL = frozenset({"SCS", "WDS", "WBS"})
SUPPLIER_REQUIRED = frozenset({"SCS", "WDS", "WBS", "DIS"})
QUANTITY_REQUIRED = frozenset({"CBS", "WBS", "DIS"})
"""Types whose lines need a contract quantity and are initialized at activation (§7.4)."""
COST_PRICE_REQUIRED = frozenset({"SCS", "DIS"})
RECEIVED_TYPES = frozenset({"CDS", "SCS", "WCS", "WDS"})
"""Types whose lines are initialized by a reception (§7.4)."""
PROCESS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "CDS": ("supply_deposit",),
    "SCS": ("supply",),
    "WDS": ("supply",),
    "WCS": ("external_supply", "internal_supply"),
}
SALES_PROCESSES = frozenset({"supply_deposit", "internal_supply"})
"""Receptions whose order type is `S`; the others are purchase orders (`P`)."""

# Log event texts (§7.3).
CONTRACT_CREATED = "Contract was created"
CONTRACT_CHANGED = "Contract was changed"
CONTRACT_ACTIVATED = "Contract was activated"
CONTRACT_DELETED = "Contract was deleted"
LINE_CREATED = "Contract line was created"
LINE_CHANGED = "Contract line was changed"
LINE_DELETED = "Contract line was deleted"
ORDER_LINE_CREATED = "Order line created"
LINE_OPENED = "Contract line was opened"
ORDER_LINE_RECEIVED = "Order line received"
LINE_CLOSED = "Contract line was closed"


# Quantities a line holds, in stock units, stay below this: far beyond any real
# contract, and far enough below the 64-bit integers of the state that sums over
# lines and reports cannot overflow.
MAX_STOCK_QUANTITY = 10**15


@dataclass
class Header:
    """A contract header as stored in `contracts`."""

    contract_id: str
    description: str
    contract_type: str
    logistic: bool
    customer: str | None
    contract_key: str | None
    supplier: str | None
    currency: str
    handler: str
    responsible: str
    cost_centre: str | None
    warehouse: str
    off_contract_sales: bool
    start_date: dt.date | None
    end_date: dt.date | None
    active: bool = False
    activated_at: dt.datetime | None = None
    status: str = "N"


@dataclass
class Line:
    """A contract line as stored in `contract_lines`."""

    contract_id: str
    line_no: int
    item: str
    contract_quantity: int | None
    contract_unit: str
    unit_factor: int
    cost_price: str | None
    sales_price: str | None
    purchase_price: str | None
    start_date: dt.date | None
    end_date: dt.date | None
    auto_assign: bool
    warehouse: str | None
    status: str = "N"
    initialized: bool = False
    reception_date: dt.date | None = None
    received: int = 0
    ncc: int = 0
    consumed: int = 0
    receptions: int = 0
    order_lines: int = 0
    reserved_for: str | None = None

    @property
    def in_use(self) -> bool:
        """A reception or an order line refers to the line."""
        return self.receptions > 0 or self.order_lines > 0

    @property
    def cap(self) -> int | None:
        """The contract quantity in stock units (None = no limit)."""
        if self.contract_quantity is None:
            return None
        return self.contract_quantity * self.unit_factor


_MASTER_FIELDS = (
    "item",
    "contract_quantity",
    "contract_unit",
    "unit_factor",
    "cost_price",
    "sales_price",
    "purchase_price",
    "start_date",
    "end_date",
    "auto_assign",
    "warehouse",
)
_HEADER_FIELDS = tuple(
    f.name for f in fields(Header) if f.name not in {"active", "activated_at", "status"}
)


class _Reject(Exception):
    """One row's violation: the column, the offending value, the rule and a sentence."""

    def __init__(self, column: str, value: Any, rule: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.value = None if value is None else str(value)
        self.rule = rule
        self.message = message


def _blank(value: str | None) -> str | None:
    return None if value is None or value == "" else value


def _int(value: str | None) -> int | None:
    v = _blank(value)
    return None if v is None else int(v)


def _date(value: str | None) -> dt.date | None:
    v = _blank(value)
    return None if v is None else dt.date.fromisoformat(v)


def _bool(value: str | None, default: bool) -> bool:
    parsed = parse_bool(_blank(value))
    return default if parsed is None else parsed


def _fmt(value: Any) -> str:
    if value is None:
        return "blank"
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def _need(row: dict[str, Any], column: str, why: str) -> str:
    value = _blank(row.get(column))
    if value is None:
        raise _Reject(column, None, "required", f"{column} is required {why}")
    return value


def _ids(con: duckdb.DuckDBPyConnection, sql: str, ids: Iterable[Any]) -> list[dict[str, Any]]:
    """Run `sql` (which uses `?` for a list of ids) and return the rows as dicts."""
    return con.sql(sql, params=[list(ids)]).pl().to_dicts()


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """The single value of a query (fetching every row: DuckDB wants results finished)."""
    return con.execute(sql, params or []).fetchall()[0][0]


class ContractState:
    """The contracts a file touches, loaded from the store, changed in memory, written back."""

    def __init__(self, con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
        self.con = con
        self.ctx = ctx
        self.headers: dict[str, Header] = {}
        self.lines: dict[tuple[str, int], Line] = {}
        self.loaded: set[str] = set()
        self.touched: set[str] = set()
        self.events: list[tuple[str, int | None, str, str | None, str | None, int | None]] = []
        self.rejects: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.applied = 0

    # --- loading and saving ---------------------------------------------------------------

    def load(self, contract_ids: Iterable[str]) -> None:
        """Load the headers and lines of the given contracts (once)."""
        ids = sorted({c for c in contract_ids if c is not None} - self.loaded)
        if not ids:
            return
        self.loaded.update(ids)
        header_names = [f.name for f in fields(Header)]
        line_names = [f.name for f in fields(Line)]
        for rec in _ids(
            self.con,
            f"SELECT {', '.join(header_names)} FROM contracts "
            "WHERE contract_id IN (SELECT UNNEST(?::VARCHAR[]))",
            ids,
        ):
            self.headers[rec["contract_id"]] = Header(**rec)
        for rec in _ids(
            self.con,
            f"SELECT {', '.join(line_names)} FROM contract_lines "
            "WHERE contract_id IN (SELECT UNNEST(?::VARCHAR[]))",
            ids,
        ):
            self.lines[(rec["contract_id"], rec["line_no"])] = Line(**rec)

    def lines_of(self, contract_id: str) -> list[Line]:
        return sorted(
            (ln for (cid, _), ln in self.lines.items() if cid == contract_id),
            key=lambda ln: ln.line_no,
        )

    def save(self, source_file: str) -> None:
        """Write the touched contracts, their lines and the log back to the store."""
        if self.touched:
            ids = sorted(self.touched)
            self.con.execute(
                "DELETE FROM contract_lines WHERE contract_id IN (SELECT UNNEST(?::VARCHAR[]))",
                [ids],
            )
            self.con.execute(
                "DELETE FROM contracts WHERE contract_id IN (SELECT UNNEST(?::VARCHAR[]))", [ids]
            )
            headers = [asdict(h) for cid, h in self.headers.items() if cid in self.touched]
            lines = [asdict(ln) for (cid, _), ln in self.lines.items() if cid in self.touched]
            _insert(self.con, "contracts", headers, [f.name for f in fields(Header)])
            _insert(self.con, "contract_lines", lines, [f.name for f in fields(Line)])
            refresh_header_status(self.con, ids)
        write_log(self.con, self.ctx, self.events, source_file)

    # --- helpers for the rules -------------------------------------------------------------

    def log(
        self,
        contract_id: str,
        line_no: int | None,
        event: str,
        order_type: str | None = None,
        order_no: str | None = None,
        quantity: int | None = None,
    ) -> None:
        self.events.append((contract_id, line_no, event, order_type, order_no, quantity))

    def reject(self, line: int, err: _Reject) -> None:
        self.rejects.append(
            {
                "line": line,
                "column": err.column,
                "value": err.value,
                "rule": err.rule,
                "message": err.message,
            }
        )

    def result(self) -> FileResult:
        rejects = (
            pl.DataFrame(self.rejects, schema=REJECT_SCHEMA) if self.rejects else empty_rejects()
        )
        return FileResult(rejects=rejects, rows_applied=self.applied, warnings=self.warnings)

    def initialize_at_activation(self, header: Header, line: Line) -> None:
        """CBS, WBS, DIS: reception date = activation date; the quantity counts as received (§7.4)."""
        line.initialized = True
        line.reception_date = self.ctx.business_date
        line.received = line.cap or 0
        line.reserved_for = header.customer if header.contract_type == "CBS" else None


def _insert(
    con: duckdb.DuckDBPyConnection, table: str, records: list[dict[str, Any]], columns: list[str]
) -> None:
    if not records:
        return
    frame = pl.DataFrame(records, infer_schema_length=None).select(columns)
    con.register("_cmi_insert", frame)
    try:
        con.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM _cmi_insert")
    finally:
        con.unregister("_cmi_insert")


def write_log(
    con: duckdb.DuckDBPyConnection,
    ctx: RunContext,
    events: list[tuple[str, int | None, str, str | None, str | None, int | None]],
    source_file: str | None,
) -> None:
    """Append log events (in order) to `contract_log`, stamped with the run's clock (§7.3)."""
    if not events:
        return
    start = _scalar(con, "SELECT coalesce(max(seq), 0) FROM contract_log")
    frame = pl.DataFrame(
        events,
        schema={
            "contract_id": pl.String,
            "line_no": pl.Int64,
            "event": pl.String,
            "order_type": pl.String,
            "order_no": pl.String,
            "quantity": pl.Int64,
        },
        orient="row",
    )
    write_log_frame(con, ctx, frame, start, source_file)


def write_log_frame(
    con: duckdb.DuckDBPyConnection,
    ctx: RunContext,
    frame: pl.DataFrame,
    start: int,
    source_file: str | pl.Expr | None,
) -> None:
    """Append a frame of log events; `source_file` may be a per-row expression."""
    src = source_file if isinstance(source_file, pl.Expr) else pl.lit(source_file, pl.String)
    out = frame.with_row_index("seq", offset=start + 1).select(
        pl.col("seq").cast(pl.Int64),
        pl.lit(ctx.run_id).alias("run_id"),
        pl.lit(ctx.as_of).cast(pl.Datetime("us")).alias("logged_at"),
        "contract_id",
        "line_no",
        "event",
        "order_type",
        "order_no",
        "quantity",
        src.alias("source_file"),
    )
    con.register("_cmi_log", out)
    try:
        con.execute(f"INSERT INTO {appended_to(con, 'contract_log')} SELECT * FROM _cmi_log")
    finally:
        con.unregister("_cmi_log")


def refresh_header_status(con: duckdb.DuckDBPyConnection, contract_ids: list[str] | None) -> None:
    """Header status (§7.3): `C` when all its lines are closed; else `O` once any line has
    a reception or an order line; else `N`."""
    where = "" if contract_ids is None else "WHERE c.contract_id IN (SELECT UNNEST(?::VARCHAR[]))"
    params = [] if contract_ids is None else [contract_ids]
    con.execute(
        f"""
        UPDATE contracts c SET status = coalesce(s.st, 'N')
        FROM (SELECT c2.contract_id,
                     CASE WHEN count(l.line_no) > 0 AND bool_and(l.status = 'C') THEN 'C'
                          WHEN bool_or(l.receptions > 0 OR l.order_lines > 0) THEN 'O'
                          ELSE 'N' END AS st
              FROM contracts c2 LEFT JOIN contract_lines l USING (contract_id)
              GROUP BY c2.contract_id) s
        WHERE c.contract_id = s.contract_id {where.replace("WHERE", "AND")}""",
        params,
    )


# --- §7.1 contract keys ------------------------------------------------------------------------


def apply_contract_keys(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """`contract_keys_*.csv` (§7.1): add the customers a contract key admits (set-based)."""
    if rows.height == 0:
        return FileResult()
    pairs = rows.select("contract_key", "customer").unique()
    con.register("_cmi_keys", pairs)
    try:
        con.execute(
            "INSERT INTO contract_keys SELECT contract_key, customer FROM _cmi_keys "
            "ON CONFLICT DO NOTHING"
        )
    finally:
        con.unregister("_cmi_keys")
    return FileResult(rows_applied=rows.height)


# --- §7.1 contract headers ---------------------------------------------------------------------


def _header_from_row(row: dict[str, Any], con: duckdb.DuckDBPyConnection) -> Header:
    """The header a row describes, after the per-type rules of §7.1."""
    why = "for upsert"
    description = _need(row, "description", why)
    ctype = _need(row, "contract_type", why).upper()
    currency = _need(row, "currency", why).upper()
    handler = _need(row, "handler", why)
    responsible = _need(row, "responsible", why)
    warehouse = _need(row, "warehouse", why)
    logistic = _bool(row.get("logistic"), False)
    if logistic and ctype != "SCS":
        raise _Reject(
            "logistic",
            row.get("logistic"),
            "logistic_only_scs",
            f"logistic handling is only for SCS contracts; this contract is {ctype}",
        )
    customer = _blank(row.get("customer"))
    if customer is None and ctype in CUSTOMER_REQUIRED:
        raise _Reject(
            "customer", None, "customer_required", f"customer is required for a {ctype} contract"
        )
    key = _blank(row.get("contract_key"))
    if key is not None:
        if ctype not in CUSTOMER_OPTIONAL:
            raise _Reject(
                "contract_key",
                key,
                "contract_key_not_allowed",
                f"a contract key is only for SCS, WDS and WBS contracts; this contract is {ctype}",
            )
        if customer is not None:
            raise _Reject(
                "contract_key",
                key,
                "contract_key_not_allowed",
                f"give either a customer or a contract key, not both (customer is {customer})",
            )
        if _scalar(con, "SELECT count(*) FROM contract_keys WHERE contract_key = ?", [key]) == 0:
            raise _Reject(
                "contract_key",
                key,
                "unknown_contract_key",
                f"contract key {key} does not exist; send its customers in a contract_keys file first",
            )
    supplier = _blank(row.get("supplier"))
    if supplier is None and ctype in SUPPLIER_REQUIRED:
        raise _Reject(
            "supplier", None, "supplier_required", f"supplier is required for a {ctype} contract"
        )
    off = _bool(row.get("off_contract_sales"), False)
    if off and logistic:
        raise _Reject(
            "off_contract_sales",
            row.get("off_contract_sales"),
            "off_contract_logistic",
            "off_contract_sales must be N for a logistic SCS contract",
        )
    start, end = _date(row.get("start_date")), _date(row.get("end_date"))
    if start is not None and end is not None and end < start:
        raise _Reject("end_date", end, "date_order", f"end_date {end} is before start_date {start}")
    return Header(
        contract_id=row["contract_id"],
        description=description,
        contract_type=ctype,
        logistic=logistic,
        customer=customer,
        contract_key=key,
        supplier=supplier,
        currency=currency,
        handler=handler,
        responsible=responsible,
        cost_centre=_blank(row.get("cost_centre")),
        warehouse=warehouse,
        off_contract_sales=off,
        start_date=start,
        end_date=end,
    )


def _check_header_change(old: Header, new: Header, lines: list[Line]) -> None:
    """What may not change once a contract has lines (§7.1, §7.2)."""
    if not lines:
        return
    if new.contract_type != old.contract_type:
        raise _Reject(
            "contract_type",
            new.contract_type,
            "contract_type_frozen",
            f"contract {old.contract_id} is {old.contract_type} and has {len(lines)} line(s); "
            "its type cannot change",
        )
    if new.currency != old.currency:
        raise _Reject(
            "currency",
            new.currency,
            "currency_frozen",
            f"contract {old.contract_id} has {len(lines)} line(s); its currency stays "
            f"{old.currency}",
        )
    for ln in lines:
        problem = _outside(ln.start_date, ln.end_date, new.start_date, new.end_date)
        if problem:
            column = "start_date" if "start" in problem else "end_date"
            raise _Reject(
                column,
                getattr(new, column),
                "line_outside_header_dates",
                f"line {ln.line_no} of contract {old.contract_id} ({_fmt(ln.start_date)} to "
                f"{_fmt(ln.end_date)}) would lie outside the contract dates {_fmt(new.start_date)} "
                f"to {_fmt(new.end_date)}",
            )


def _outside(
    start: dt.date | None, end: dt.date | None, h_start: dt.date | None, h_end: dt.date | None
) -> str | None:
    """Why a line's dates do not lie within the header's dates, or None (§7.2).

    The guide: dates may be left blank on either level; only where both levels
    give them must the line's lie within the header's (a blank line date takes the
    header's).
    """
    if start is not None:
        if h_start is not None and start < h_start:
            return "start before"
        if h_end is not None and start > h_end:
            return "start after end"
    if end is not None:
        if h_end is not None and end > h_end:
            return "end after"
        if h_start is not None and end < h_start:
            return "end before start"
    return None


def apply_contracts(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """`contracts_*.csv` (§7.1, §7.3, §7.4): upsert or delete contract headers, activate them.

    Activation (`active` = Y) is logged, stamps `activated_at` and initializes the
    CBS, WBS and DIS lines; it is never undone.  A delete is allowed only while no
    reception or order line refers to the contract.
    """
    state = ContractState(con, ctx)
    state.load(rows.get_column("contract_id").to_list())
    for row in rows.iter_rows(named=True):
        try:
            _apply_contract_row(state, row)
        except _Reject as err:
            state.reject(row["_line"], err)
        else:
            state.applied += 1
    state.save(ctx.source_file)
    return state.result()


def _apply_contract_row(state: ContractState, row: dict[str, Any]) -> None:
    cid = row["contract_id"]
    action = (_blank(row.get("action")) or "upsert").lower()
    old = state.headers.get(cid)
    if action == "delete":
        if old is None:
            raise _Reject("contract_id", cid, "unknown_contract", f"contract {cid} does not exist")
        for ln in state.lines_of(cid):
            if ln.in_use:
                raise _Reject(
                    "contract_id",
                    cid,
                    "contract_in_use",
                    f"contract {cid} cannot be deleted: line {ln.line_no} has "
                    f"{ln.receptions} reception(s) and {ln.order_lines} order line(s)",
                )
        for ln in state.lines_of(cid):  # its lines go with it, each logged (§7.3)
            del state.lines[(cid, ln.line_no)]
            state.log(cid, ln.line_no, LINE_DELETED)
        del state.headers[cid]
        state.touched.add(cid)
        state.log(cid, None, CONTRACT_DELETED)
        return
    new = _header_from_row(row, state.con)
    active = parse_bool(_blank(row.get("active")))
    lines = state.lines_of(cid)
    if old is None:
        state.headers[cid] = new
        state.log(cid, None, CONTRACT_CREATED)
    else:
        _check_header_change(old, new, lines)
        changed = any(getattr(old, f) != getattr(new, f) for f in _HEADER_FIELDS)
        new = replace(new, active=old.active, activated_at=old.activated_at, status=old.status)
        state.headers[cid] = new
        if changed:
            state.log(cid, None, CONTRACT_CHANGED)
        if active is False and old.active:
            state.warnings.append(
                f"contract {cid}: active = N ignored, activation is not undone (line {row['_line']})"
            )
        if new.contract_type == "CBS" and new.customer != old.customer:
            for ln in lines:  # the type-60 reservation is for the contract's customer
                if ln.initialized:
                    ln.reserved_for = new.customer
    state.touched.add(cid)
    if active and not new.active:
        new.active = True
        new.activated_at = state.ctx.as_of
        state.log(cid, None, CONTRACT_ACTIVATED)
        if new.contract_type in QUANTITY_REQUIRED:
            for ln in lines:
                if not ln.initialized:
                    state.initialize_at_activation(new, ln)


# --- §7.2 contract lines ----------------------------------------------------------------------


def _products(con: duckdb.DuckDBPyConnection, items: Iterable[str | None]) -> dict[str, str]:
    """product_code -> stock_unit of the given items that exist."""
    wanted = sorted({i for i in items if i})
    if not wanted:
        return {}
    rows = _ids(
        con,
        "SELECT product_code, stock_unit FROM products "
        "WHERE product_code IN (SELECT UNNEST(?::VARCHAR[]))",
        wanted,
    )
    return {r["product_code"]: r["stock_unit"] for r in rows}


def apply_contract_lines(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """`contract_lines_*.csv` (§7.2, §7.3, §7.4): upsert or delete contract lines.

    Applies the per-type rules (contract quantity for CBS/WBS/DIS, cost price for
    SCS/DIS), the dates within the header's, the unit frozen once the line is in
    use, the quantity never below consumed nor raised on an initialized
    CDS/SCS/WCS/WDS line without CMI-MULT; the manual and automatic status
    transitions; and initializes CBS/WBS/DIS lines added to an active contract.
    """
    state = ContractState(con, ctx)
    state.load(rows.get_column("contract_id").to_list())
    products = _products(con, rows.get_column("item").to_list())
    for row in rows.iter_rows(named=True):
        try:
            _apply_line_row(state, row, products)
        except _Reject as err:
            state.reject(row["_line"], err)
        else:
            state.applied += 1
    state.save(ctx.source_file)
    return state.result()


def _apply_line_row(state: ContractState, row: dict[str, Any], products: dict[str, str]) -> None:
    cid = row["contract_id"]
    line_no = int(row["line_no"])
    header = state.headers.get(cid)
    if header is None:
        raise _Reject("contract_id", cid, "unknown_contract", f"contract {cid} does not exist")
    ctype = header.contract_type
    action = (_blank(row.get("action")) or "upsert").lower()
    old = state.lines.get((cid, line_no))
    if action == "delete":
        if old is None:
            raise _Reject(
                "line_no", line_no, "unknown_line", f"contract {cid} has no line {line_no}"
            )
        if old.in_use:
            raise _Reject(
                "line_no",
                line_no,
                "line_in_use",
                f"line {line_no} of contract {cid} cannot be deleted: it has "
                f"{old.receptions} reception(s) and {old.order_lines} order line(s)",
            )
        del state.lines[(cid, line_no)]
        state.touched.add(cid)
        state.log(cid, line_no, LINE_DELETED)
        return
    item = _need(row, "item", "for upsert")
    if item not in products:
        raise _Reject("item", item, "unknown_item", f"item {item} is not an existing product")
    if old is not None and old.in_use and item != old.item:
        raise _Reject(
            "item",
            item,
            "item_frozen",
            f"line {line_no} of contract {cid} is in use; its item stays {old.item}",
        )
    quantity = _int(row.get("contract_quantity"))
    if quantity is None and ctype in QUANTITY_REQUIRED:
        raise _Reject(
            "contract_quantity",
            None,
            "contract_quantity_required",
            f"contract_quantity is required for a line of a {ctype} contract",
        )
    if _blank(row.get("cost_price")) is None and ctype in COST_PRICE_REQUIRED:
        raise _Reject(
            "cost_price",
            None,
            "cost_price_required",
            f"cost_price is required for a line of a {ctype} contract",
        )
    unit = _blank(row.get("contract_unit")) or products[item]
    factor = _int(row.get("unit_factor")) or 1
    if quantity is not None and quantity * factor > MAX_STOCK_QUANTITY:
        raise _Reject(
            "contract_quantity",
            quantity,
            "quantity_too_large",
            f"contract_quantity {quantity} x unit_factor {factor} is more than "
            f"{MAX_STOCK_QUANTITY:,} stock units; check the quantity and the unit",
        )
    if old is not None and old.in_use:
        if unit != old.contract_unit:
            raise _Reject(
                "contract_unit",
                unit,
                "unit_frozen",
                f"line {line_no} of contract {cid} has receptions or order lines; its "
                f"contract_unit stays {old.contract_unit}",
            )
        if factor != old.unit_factor:
            raise _Reject(
                "unit_factor",
                factor,
                "unit_frozen",
                f"line {line_no} of contract {cid} has receptions or order lines; its "
                f"unit_factor stays {old.unit_factor}",
            )
    start, end = _date(row.get("start_date")), _date(row.get("end_date"))
    if start is not None and end is not None and end < start:
        raise _Reject("end_date", end, "date_order", f"end_date {end} is before start_date {start}")
    problem = _outside(start, end, header.start_date, header.end_date)
    if problem:
        column = "start_date" if "start" in problem else "end_date"
        raise _Reject(
            column,
            start if column == "start_date" else end,
            "outside_header_dates",
            f"the line dates {_fmt(start)} to {_fmt(end)} must lie within the dates of "
            f"contract {cid}: {_fmt(header.start_date)} to {_fmt(header.end_date)}",
        )
    manual = (_blank(row.get("status")) or "").upper() or None
    new = Line(
        contract_id=cid,
        line_no=line_no,
        item=item,
        contract_quantity=quantity,
        contract_unit=unit,
        unit_factor=factor,
        cost_price=_blank(row.get("cost_price")),
        sales_price=_blank(row.get("sales_price")),
        purchase_price=_blank(row.get("purchase_price")),
        start_date=start,
        end_date=end,
        auto_assign=_bool(row.get("auto_assign"), True),
        warehouse=_blank(row.get("warehouse")),
    )
    state.touched.add(cid)
    if old is None:
        state.lines[(cid, line_no)] = new
        state.log(cid, line_no, LINE_CREATED)
        if header.active and ctype in QUANTITY_REQUIRED:
            state.initialize_at_activation(header, new)
        if manual == "C":
            new.status = "C"
            state.log(cid, line_no, LINE_CLOSED)
        elif manual == "O":
            new.status = "O"
            state.log(cid, line_no, LINE_OPENED)
        return
    _check_quantity_change(state, header, old, new)
    if manual == "O" and old.status != "O" and new.cap is not None and old.consumed >= new.cap:
        raise _Reject(
            "status",
            "O",
            "line_sold_out",
            f"line {line_no} of contract {cid} cannot be opened: consumed {old.consumed} equals "
            f"its contract quantity; raise contract_quantity to re-open it",
        )
    changed = any(getattr(old, f) != getattr(new, f) for f in _MASTER_FIELDS)
    raised = old.cap is not None and (new.cap is None or new.cap > old.cap)
    for f in _MASTER_FIELDS:
        setattr(old, f, getattr(new, f))
    if old.initialized and ctype in QUANTITY_REQUIRED:
        old.received = old.cap or 0  # CBS/WBS/DIS: the contract quantity is the stock
    if changed:
        state.log(cid, line_no, LINE_CHANGED)
    if manual == "C" and old.status != "C":
        old.status = "C"
        state.log(cid, line_no, LINE_CLOSED)
    elif manual == "O" and old.status != "O":
        old.status = "O"
        state.log(cid, line_no, LINE_OPENED)
    elif manual is None:
        if old.status == "C" and raised:
            old.status = "O"
            state.log(cid, line_no, LINE_OPENED)
        if old.cap is not None and old.consumed >= old.cap and old.status != "C":
            old.status = "C"
            state.log(cid, line_no, LINE_CLOSED)


def _check_quantity_change(state: ContractState, header: Header, old: Line, new: Line) -> None:
    """Contract quantity never below consumed; no raise of an initialized CDS/SCS/WCS/WDS line
    without CMI-MULT (§7.2)."""
    where = f"line {old.line_no} of contract {old.contract_id}"
    if new.cap is not None and new.cap < old.consumed:
        raise _Reject(
            "contract_quantity",
            new.contract_quantity,
            "below_consumed",
            f"{where} has consumed {old.consumed} stock units; contract_quantity "
            f"{new.contract_quantity} x {new.unit_factor} would go below it",
        )
    raised = old.contract_quantity is not None and (
        new.contract_quantity is None or new.contract_quantity > old.contract_quantity
    )
    if (
        raised
        and old.initialized
        and header.contract_type in RECEIVED_TYPES
        and not state.ctx.config.functions.cmi_mult
    ):
        raise _Reject(
            "contract_quantity",
            new.contract_quantity,
            "quantity_frozen",
            f"{where} is initialized; without CMI-MULT its contract quantity "
            f"{old.contract_quantity} cannot be raised (create a new line instead)",
        )


# --- §7.4 receptions ----------------------------------------------------------------------


def apply_receipts(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """`receipts_*.csv` (§7.4): receptions initialize CDS, SCS, WCS and WDS lines.

    The contract must be active and the `process` must fit its type.  Without
    CMI-MULT a line takes one reception; with it several, their sum within the
    contract quantity.  With CMI-BATH a batch is received on one line of a
    contract only.  The first reception sets the reception date; received minus
    NCC becomes available.  Logs `Order line created`, `Contract line was opened`
    (first time) and `Order line received`.
    """
    state = ContractState(con, ctx)
    state.load(rows.get_column("contract_id").to_list())
    batches: dict[tuple[str, str], set[int]] = {}
    for rec in _ids(
        con,
        "SELECT DISTINCT contract_id, batch, line_no FROM contract_receptions "
        "WHERE batch IS NOT NULL AND contract_id IN (SELECT UNNEST(?::VARCHAR[]))",
        sorted(state.loaded),
    ):
        batches.setdefault((rec["contract_id"], rec["batch"]), set()).add(rec["line_no"])
    applied: list[dict[str, Any]] = []
    for row in rows.iter_rows(named=True):
        try:
            applied.append(_apply_receipt_row(state, row, batches))
        except _Reject as err:
            state.reject(row["_line"], err)
        else:
            state.applied += 1
    state.save(ctx.source_file)
    if applied:
        frame = pl.DataFrame(applied, infer_schema_length=None).with_columns(
            pl.lit(ctx.run_id).alias("run_id"), pl.lit(ctx.source_file).alias("source_file")
        )
        columns = [
            "run_id", "source_file", "line", "contract_id", "line_no", "quantity",
            "ncc_quantity", "receipt_date", "process", "supply_order", "batch",
        ]  # fmt: skip
        _insert(con, "contract_receptions", frame.to_dicts(), columns)
    return state.result()


def _apply_receipt_row(
    state: ContractState, row: dict[str, Any], batches: dict[tuple[str, str], set[int]]
) -> dict[str, Any]:
    cid = row["contract_id"]
    line_no = int(row["line_no"])
    header = state.headers.get(cid)
    if header is None:
        raise _Reject("contract_id", cid, "unknown_contract", f"contract {cid} does not exist")
    line = state.lines.get((cid, line_no))
    if line is None:
        raise _Reject("line_no", line_no, "unknown_line", f"contract {cid} has no line {line_no}")
    ctype = header.contract_type
    if ctype not in RECEIVED_TYPES:
        raise _Reject(
            "contract_id",
            cid,
            "no_reception",
            f"contract {cid} is {ctype}: its lines are initialized at activation, not by a reception",
        )
    process = row["process"].lower()
    if process not in PROCESS_BY_TYPE[ctype]:
        raise _Reject(
            "process",
            process,
            "process_mismatch",
            f"a {ctype} line is received with process {' or '.join(PROCESS_BY_TYPE[ctype])}, "
            f"not {process}",
        )
    if not header.active:
        raise _Reject(
            "contract_id", cid, "not_active", f"contract {cid} is not active; activate it first"
        )
    if line.status == "C":
        raise _Reject(
            "line_no", line_no, "line_closed", f"line {line_no} of contract {cid} is closed"
        )
    quantity = int(row["quantity"])
    ncc = _int(row.get("ncc_quantity")) or 0
    if ncc > quantity:
        raise _Reject(
            "ncc_quantity",
            ncc,
            "ncc_above_quantity",
            f"ncc_quantity {ncc} is more than the received quantity {quantity}",
        )
    where = f"line {line_no} of contract {cid}"
    if line.receptions > 0 and not state.ctx.config.functions.cmi_mult:
        raise _Reject(
            "line_no",
            line_no,
            "second_reception",
            f"{where} was already received on {_fmt(line.reception_date)}; without CMI-MULT a "
            "line takes one reception (create a new line)",
        )
    received_cu = line.received // line.unit_factor
    if line.contract_quantity is not None and received_cu + quantity > line.contract_quantity:
        raise _Reject(
            "quantity",
            quantity,
            "above_contract_quantity",
            f"{where} has contract quantity {line.contract_quantity} and has received "
            f"{received_cu}; {quantity} more would exceed it",
        )
    batch = _blank(row.get("batch"))
    if batch is not None and state.ctx.config.functions.cmi_bath:
        others = sorted(batches.get((cid, batch), set()) - {line_no})
        if others:
            raise _Reject(
                "batch",
                batch,
                "batch_on_other_line",
                f"batch {batch} was received on line {others[0]} of contract {cid}; with "
                "CMI-BATH a batch belongs to one line of a contract",
            )
    receipt_date = dt.date.fromisoformat(row["receipt_date"])
    factor = line.unit_factor
    if max(line.received + quantity * factor, line.ncc + ncc * factor) > MAX_STOCK_QUANTITY:
        raise _Reject(
            "quantity",
            quantity,
            "quantity_too_large",
            f"line {line_no} of contract {cid} would hold more than {MAX_STOCK_QUANTITY:,} stock "
            "units; check the quantity and the line's unit",
        )
    line.received += quantity * factor
    line.ncc += ncc * factor
    line.receptions += 1
    line.initialized = True
    if line.reception_date is None:
        line.reception_date = receipt_date
    if batch is not None:
        batches.setdefault((cid, batch), set()).add(line_no)
    order_type = "S" if process in SALES_PROCESSES else "P"
    order_no = _blank(row.get("supply_order"))
    state.touched.add(cid)
    state.log(cid, line_no, ORDER_LINE_CREATED, order_type, order_no, quantity * factor)
    if line.status == "N":
        line.status = "O"
        state.log(cid, line_no, LINE_OPENED, order_type, order_no)
    state.log(cid, line_no, ORDER_LINE_RECEIVED, order_type, order_no, quantity * factor)
    return {
        "line": row["_line"],
        "contract_id": cid,
        "line_no": line_no,
        "quantity": quantity,
        "ncc_quantity": ncc,
        "receipt_date": receipt_date,
        "process": process,
        "supply_order": order_no,
        "batch": batch,
    }


__all__ = [
    "Header",
    "Line",
    "ContractState",
    "apply_contract_keys",
    "apply_contracts",
    "apply_contract_lines",
    "apply_receipts",
    "refresh_header_status",
    "write_log",
    "write_log_frame",
]
