"""Allocation and consumption of sales order lines on contract lines (SPEC §7.5).

`allocate_order_lines` is a pure function: order lines and candidate contract
lines in, allocations, consumption, log events and rejects out.  All order lines
of a run are taken together in (`order_date`, `order_no`, `order_line`) order;
each is linked to exactly one contract line, which consumes its quantity, or is
left unlinked with the reason of the first narrowing step that leaves no line.

Design (allocation is sequential: an order line consumes quantity that the next
one sees):

- Everything that does not depend on consumption is decided set-based in
  Polars: the static rejects, and for every order line the contract lines that
  pass narrowing steps 1-7 (joined on item and customer, then filtered), ranked
  in the search order, which is the same for every order line.
- Contract lines that only their own order lines can take and that hold all of
  them without closing are settled set-based (`_settle_isolated_lines`).
- A small Python loop then walks the other order lines once, over integer
  arrays: for each, its few ranked candidates, skipping lines closed during the
  run, linking the first that covers the quantity (ICFULLQT: the first that
  covers it at all), else noting why the search failed.  An order line with no
  open candidate is only recorded; after the walk one set-based pass works out
  its reason from the point at which each line closed (`_diagnose`: step 4 is
  the only step that changes during the walk).  `_Evaluator.evaluate`, the
  step-by-step rule against the live state, is the reference implementation
  the property tests compare against (`reference=True`).

`apply_orders` loads the state, calls it and writes the results back.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import polars as pl

from transforms.context import FileResult, FunctionsConfig, RunContext
from transforms.contracts import (
    LINE_CLOSED,
    LINE_OPENED,
    ORDER_LINE_CREATED,
    refresh_header_status,
    write_log_frame,
)
from transforms.rejects import LINE, REJECT_SCHEMA
from transforms.state import appended_to

FILE = "_file"
"""Optional column of pooled order rows: the order file the row came from."""

# Reasons (§7.5); empty when linked.
NO_CONTRACT_LINE = "NO_CONTRACT_LINE"
OFF_CONTRACT_NORMAL_SOURCING = "OFF_CONTRACT_NORMAL_SOURCING"
OFF_CONTRACT_NOT_ALLOWED = "OFF_CONTRACT_NOT_ALLOWED"
NOT_INITIALIZED = "NOT_INITIALIZED"
LINE_IS_CLOSED = "LINE_CLOSED"
CONTRACT_NOT_VALID = "CONTRACT_NOT_VALID"
CUSTOMER_NOT_ALLOWED = "CUSTOMER_NOT_ALLOWED"
UNIT_MISMATCH = "UNIT_MISMATCH"
AUTO_ASSIGN_OFF = "AUTO_ASSIGN_OFF"
INSUFFICIENT_QUANTITY = "INSUFFICIENT_QUANTITY"

ORDER_SCHEMA: dict[str, pl.DataType] = {
    "order_no": pl.String(),
    "order_line": pl.Int64(),
    "order_date": pl.Date(),
    "customer": pl.String(),
    "item": pl.String(),
    "quantity": pl.Int64(),
    "warehouse": pl.String(),
    "contract_id": pl.String(),
    "line_no": pl.Int64(),
}
"""Typed order lines (plus `_line` and, when pooled, `_file`)."""

CANDIDATE_SCHEMA: dict[str, pl.DataType] = {
    "contract_id": pl.String(),
    "line_no": pl.Int64(),
    "item": pl.String(),
    "contract_type": pl.String(),
    "warehouse": pl.String(),  # effective: the line's, else the header's
    "active": pl.Boolean(),  # the contract is active
    "initialized": pl.Boolean(),
    "status": pl.String(),  # N O C
    "valid_from": pl.Date(),  # the later of the header's and the line's start date
    "valid_to": pl.Date(),  # the earlier of the header's and the line's end date
    "reception_date": pl.Date(),
    "customer": pl.String(),  # the contract's customer (CBS: the reservation's)
    "key_customers": pl.List(pl.String()),  # customers of its contract key; null = no key
    "auto_assign": pl.Boolean(),
    "unit_factor": pl.Int64(),
    "available": pl.Int64(),  # stock units
    "consumed": pl.Int64(),  # stock units
    "cap": pl.Int64(),  # contract quantity in stock units; null = no limit
}
"""The candidate-line frame: one row per contract line, with what allocation needs."""

_EVENT_SCHEMA: dict[str, pl.DataType] = {
    "contract_id": pl.String(),
    "line_no": pl.Int64(),
    "event": pl.String(),
    "order_type": pl.String(),
    "order_no": pl.String(),
    "quantity": pl.Int64(),
}

_NO_DAY = -(10**9)
_LAST_DAY = 10**9
_NEVER = 2**62


@dataclass
class Allocation:
    """What allocating a run's order lines did.

    - `allocations`: every order line that was not rejected, in processing order,
      with `contract_id`, `line_no` (null when unlinked), `reason` (null when
      linked) and `detail`; it keeps `_line` (and `_file`).
    - `consumption`: one row per contract line that took order lines: its new
      `consumed`, the number of `order_lines` added and its new `status`.
    - `events`: the log events in order (`Order line created`, `Contract line was
      opened`, `Contract line was closed`), with `_file` when pooled.
    - `rejects`: rejected order lines (the reject frame, with `file` first when
      the orders carry `_file`).
    """

    allocations: pl.DataFrame
    consumption: pl.DataFrame
    events: pl.DataFrame
    rejects: pl.DataFrame


@dataclass
class OrdersResult(FileResult):
    """`FileResult` of the pooled order files, with the rows applied per file."""

    rows_applied_by_file: dict[str, int] = field(default_factory=dict)


def orders_from_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Type the validated string rows of order files (`ORDER_SCHEMA` plus `_line`, `_file`)."""
    extra = [c for c in (LINE, FILE) if c in rows.columns]
    typed = [
        pl.col(name).cast(dtype) if name in rows.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in ORDER_SCHEMA.items()
        if name != "order_date"
    ]
    return rows.select(
        *typed,
        pl.col("order_date").str.strptime(pl.Date, "%Y-%m-%d"),
        *[pl.col(c) for c in extra],
    ).select(*ORDER_SCHEMA, *extra)


# --- static rules -------------------------------------------------------------------------


def _reject_frame(
    orders: pl.DataFrame, condition: pl.Expr, column: str, rule: str, message: pl.Expr
) -> pl.DataFrame:
    cols = [pl.col(FILE).alias("file")] if FILE in orders.columns else []
    value = pl.col(column).cast(pl.String) if column in orders.columns else pl.lit(None)
    return orders.filter(condition).select(
        "_o",
        *cols,
        pl.col(LINE).cast(pl.Int64).alias("line"),
        pl.lit(column).alias("column"),
        value.alias("value"),
        pl.lit(rule).alias("rule"),
        message.alias("message"),
    )


def _static_rejects(
    orders: pl.DataFrame, lines: pl.DataFrame, contracts: pl.DataFrame
) -> pl.DataFrame:
    """Rejected order lines that do not depend on consumption (§7.5)."""
    s = pl.col
    out: list[pl.DataFrame] = []
    all_orders = orders
    # only order lines that name a contract or a line can break these rules
    orders = orders.filter(s("contract_id").is_not_null() | s("line_no").is_not_null())
    out.append(
        _reject_frame(
            orders,
            s("line_no").is_not_null() & s("contract_id").is_null(),
            "line_no",
            "line_without_contract",
            pl.format(
                "line_no {} is given without a contract_id: a chosen line needs its contract",
                s("line_no"),
            ),
        )
    )
    known = contracts.select("contract_id", pl.lit(True).alias("_known"), "off_contract_sales")
    with_ref = orders.join(known, on="contract_id", how="left", maintain_order="left")
    out.append(
        _reject_frame(
            with_ref,
            s("contract_id").is_not_null() & s("_known").is_null(),
            "contract_id",
            "unknown_contract",
            pl.format("contract {} does not exist", s("contract_id")),
        )
    )
    line_keys = lines.select("contract_id", "line_no", pl.col("item").alias("_line_item"))
    chosen = with_ref.join(
        line_keys, on=["contract_id", "line_no"], how="left", maintain_order="left"
    )
    # a chosen line the contract does not have is off-contract like one of another item
    # (step 1: the chosen line is the only candidate); only the contract must exist
    has_item = lines.select("contract_id", "item").unique().with_columns(pl.lit(True).alias("_has"))
    off = chosen.join(has_item, on=["contract_id", "item"], how="left", maintain_order="left")
    no_line = (
        s("contract_id").is_not_null()
        & s("_known").is_not_null()
        & (
            (s("line_no").is_null() & s("_has").is_null())
            | (s("line_no").is_not_null() & (s("_line_item").fill_null("") != s("item")))
        )
    )
    out.append(
        _reject_frame(
            off,
            no_line & ~s("off_contract_sales").fill_null(False),
            "item",
            OFF_CONTRACT_NOT_ALLOWED,
            pl.when(s("line_no").is_null())
            .then(pl.format("contract {} has no line for item {} and does not allow off-contract sales", s("contract_id"), s("item")))
            .otherwise(pl.format("contract {} has no line {} for item {} and does not allow off-contract sales", s("contract_id"), s("line_no"), s("item"))),
        )
    )  # fmt: skip
    rejects = pl.concat(out, how="vertical").unique(
        subset=["_o"], keep="first", maintain_order=True
    )
    remaining = all_orders.filter(~s("_o").is_in(rejects.get_column("_o").implode()))
    # only order lines whose key repeats can be duplicates
    remaining = remaining.filter(pl.struct("order_no", "order_line").is_duplicated())
    where_first = (
        pl.format("{} line {}", s(FILE), s(LINE))
        if FILE in orders.columns
        else pl.format("line {}", s(LINE))
    )
    firsts = remaining.with_columns(
        where_first.first().over("order_no", "order_line").alias("_where")
    )
    dups = _reject_frame(
        firsts,
        ~pl.struct("order_no", "order_line").is_first_distinct(),
        "order_line",
        "duplicate_order_line",
        pl.format("order line {}/{} appears earlier in this run ({})", s("order_no"), s("order_line"), s("_where")),
    )  # fmt: skip
    return pl.concat([rejects, dups], how="vertical")


# --- the candidates of each order line ------------------------------------------------------


def _rank_lines(lines: pl.DataFrame) -> pl.DataFrame:
    """Contract lines in search order (§7.5): closest effective end date (none = last), oldest
    reception date, contract_id, line_no.  `_li` is the position."""
    return lines.sort(
        ["valid_to", "reception_date", "contract_id", "line_no"], nulls_last=True
    ).with_row_index("_li")


def _code_items_and_customers(
    orders: pl.DataFrame, ranked: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Integer codes of the items (`_ic`) and of the lines' customers (`_lcc`, orders: `_cc`)
    of the contract lines, to join on; null for an order item or customer no line has."""
    s = pl.col
    items = ranked.select("item").unique().with_row_index("_ic")
    custs = ranked.select(s("customer").drop_nulls().unique().alias("customer")).with_row_index(
        "_cc"
    )
    ranked = ranked.join(items, on="item", how="left", maintain_order="left").join(
        custs.rename({"_cc": "_lcc"}), on="customer", how="left", maintain_order="left"
    )
    orders = orders.join(items, on="item", how="left", maintain_order="left").join(
        custs, on="customer", how="left", maintain_order="left"
    )
    return orders, ranked


def _candidate_pairs(orders: pl.DataFrame, ranked: pl.DataFrame) -> pl.DataFrame:
    """(order, line) pairs that pass narrowing steps 1-7 with the state at the start of the run.

    Joined on item and customer where the line admits named customers, so an order
    line meets only the lines it may buy from; sorted by order, then search rank.
    """
    s = pl.col
    lk = ranked.lazy().filter(
        s("active") & s("initialized") & (s("status") != "C")
    ).select(
        "_li", "contract_id", "line_no", "item", "_ic", "_lcc", "contract_type", pl.col("warehouse").alias("_lwh"),
        "valid_from", "valid_to", pl.col("customer").alias("_lcust"), "key_customers", "unit_factor",
    )  # fmt: skip
    ok = orders.lazy().select(
        "_o", "item", "_ic", "customer", "_cc", "warehouse", "contract_id", "line_no", "order_date",
        "quantity",
    )  # fmt: skip
    ref = ok.filter(s("contract_id").is_not_null()).join(
        lk, on=["item", "contract_id"], how="inner", suffix="_l"
    )
    ref = ref.filter(
        (s("line_no").is_null() | (s("line_no") == s("line_no_l")))
        & (
            _may_buy()
        )
    ).select("_o", "_li", "warehouse", "_lwh", "order_date", "valid_from", "valid_to", "quantity", "unit_factor")  # fmt: skip
    plain = ok.filter(s("contract_id").is_null())
    open_lines = lk.filter(s("contract_type") != "DIS")
    by_customer = plain.join(
        open_lines.filter(s("_lcust").is_not_null()), left_on=["_ic", "_cc"], right_on=["_ic", "_lcc"], how="inner"
    )  # fmt: skip
    by_key = plain.join(
        open_lines.filter(s("_lcust").is_null() & s("key_customers").is_not_null())
        .explode("key_customers")
        .rename({"key_customers": "_kc"}),
        left_on=["_ic", "customer"],
        right_on=["_ic", "_kc"],
        how="inner",
    )
    everyone = plain.join(
        open_lines.filter(s("_lcust").is_null() & s("key_customers").is_null()), on="_ic", how="inner"
    )  # fmt: skip
    cols = [
        "_o",
        "_li",
        "warehouse",
        "_lwh",
        "order_date",
        "valid_from",
        "valid_to",
        "quantity",
        "unit_factor",
    ]
    pairs = pl.concat(
        [ref.select(cols), by_customer.select(cols), by_key.select(cols), everyone.select(cols)]
    )
    return (
        pairs.filter(
            (s("warehouse").is_null() | (s("warehouse") == s("_lwh")))
            & (s("valid_from").is_null() | (s("valid_from") <= s("order_date")))
            & (s("valid_to").is_null() | (s("order_date") <= s("valid_to")))
            & ((s("quantity") % s("unit_factor")) == 0)
        )
        .select("_o", "_li")
        .sort("_o", "_li")
        .collect()
    )  # fmt: skip


# --- the sequential walk ----------------------------------------------------------------------


def _may_buy() -> pl.Expr:
    """§7.1 on a pair frame: the line's customer when set; else its key's customers; else all."""
    s = pl.col
    return (
        pl.when(s("_lcust").is_not_null())
        .then(s("_lcust") == s("customer"))
        .when(s("key_customers").is_not_null())
        .then(s("key_customers").list.contains(s("customer")))
        .otherwise(pl.lit(True))
    )


def _days(series: pl.Series, null: int) -> list[int]:
    return series.cast(pl.Int32).fill_null(null).to_list()


class _Evaluator:
    """The live state of the contract lines and the step-by-step rules of §7.5."""

    def __init__(self, ranked: pl.DataFrame, functions: FunctionsConfig) -> None:
        self.icfullqt = functions.icfullqt
        self.cid: list[str] = ranked.get_column("contract_id").to_list()
        self.lno: list[int] = ranked.get_column("line_no").to_list()
        self.ctype: list[str] = ranked.get_column("contract_type").to_list()
        self.wh: list[str | None] = ranked.get_column("warehouse").to_list()
        self.ready: list[bool] = (
            ranked.select(
                pl.col("active").fill_null(False) & pl.col("initialized").fill_null(False)
            )
            .to_series()
            .to_list()
        )
        self.closed: list[bool] = (ranked.get_column("status") == "C").to_list()
        self.opened: list[bool] = (ranked.get_column("status") != "N").to_list()
        self.vfrom = _days(ranked.get_column("valid_from"), _NO_DAY)
        self.vto = _days(ranked.get_column("valid_to"), _LAST_DAY)
        self.cust: list[str | None] = ranked.get_column("customer").to_list()
        self.keys: list[frozenset[str] | None] = [
            None if k is None else frozenset(k)
            for k in ranked.get_column("key_customers").to_list()
        ]
        self.auto: list[bool] = ranked.get_column("auto_assign").fill_null(True).to_list()
        self.factor: list[int] = ranked.get_column("unit_factor").to_list()
        self.avail: list[int] = ranked.get_column("available").fill_null(0).to_list()
        self.consumed: list[int] = ranked.get_column("consumed").fill_null(0).to_list()
        self.cap: list[int] = ranked.get_column("cap").fill_null(-1).to_list()
        self.taken: list[int] = [0] * len(self.cid)
        self.item: list[str] = ranked.get_column("item").to_list()
        self.closed_by: list[int] = [-1 if c else _NEVER for c in self.closed]
        """The order line at which each line closed (-1: closed before the run)."""
        self.by_item: dict[str, list[int]] = {}
        for li, item in enumerate(self.item):
            self.by_item.setdefault(item, []).append(li)

    def name(self, li: int) -> str:
        return f"contract {self.cid[li]} line {self.lno[li]}"

    def may_buy(self, li: int, customer: str) -> bool:
        """§7.1: its customer when one is set; else the customers of its key; else everyone."""
        cust = self.cust[li]
        if cust is not None:
            return cust == customer
        keys = self.keys[li]
        return keys is None or customer in keys

    def describe(
        self,
        step: int,
        li: int,
        item: str,
        customer: str,
        warehouse: str | None,
        ref: str | None,
        chosen: int | None,
        qty: int,
    ) -> tuple[str, str]:
        """The reason and detail when narrowing step `step` leaves no line; `li` is the first
        line (search order) that the step removed."""
        if step == 1:
            if ref is None:
                return NO_CONTRACT_LINE, f"no contract line for item {item}"
            what = (
                f"contract {ref} has no line for item {item}"
                if chosen is None
                else f"contract {ref} has no line {chosen} for item {item}"
            )
            return OFF_CONTRACT_NORMAL_SOURCING, what + "; normal sourcing"
        if step == 2:
            if warehouse is not None:
                return (
                    NO_CONTRACT_LINE,
                    f"no contract line for item {item} in warehouse {warehouse}",
                )
            return (
                NO_CONTRACT_LINE,
                f"only DIS contract lines hold item {item}; DIS needs a contract reference",
            )
        if step == 3:
            return (
                NOT_INITIALIZED,
                f"{self.name(li)} is not initialized (contract active and line received)",
            )
        if step == 4:
            return LINE_IS_CLOSED, f"{self.name(li)} is closed"
        if step == 5:
            return CONTRACT_NOT_VALID, f"{self.name(li)} is not valid on the order date"
        if step == 6:
            return (
                CUSTOMER_NOT_ALLOWED,
                f"customer {customer} may not buy from contract {self.cid[li]}",
            )
        return UNIT_MISMATCH, (
            f"quantity {qty} is not a multiple of the unit factor {self.factor[li]} of {self.name(li)}"
        )

    def search(
        self, survivors: list[int], is_ref: bool, qty: int
    ) -> tuple[int, str | None, str | None]:
        """§7.5 search over the lines left by steps 1-7 (in search order): auto-assign,
        ICFULLQT, no split; (line or -1, reason, detail)."""
        eligible = survivors if is_ref else [li for li in survivors if self.auto[li]]
        first = -1
        for li in eligible:
            if self.avail[li] >= qty:
                return li, None, None
            if first < 0:
                first = li
            if not self.icfullqt:
                break
        if not is_ref:
            for li in survivors:
                if not self.auto[li] and self.avail[li] >= qty:
                    return (
                        -1,
                        AUTO_ASSIGN_OFF,
                        f"{self.name(li)} could take it but has auto-assign N",
                    )
        if first < 0:
            first = survivors[0]
        return -1, INSUFFICIENT_QUANTITY, f"{self.name(first)} can take {self.avail[first]}"

    def evaluate(
        self,
        item: str,
        customer: str,
        warehouse: str | None,
        ref: str | None,
        chosen: int | None,
        day: int,
        qty: int,
    ) -> tuple[int, str | None, str | None]:
        """The reference rule for one order line against the live state: (line or -1, reason, detail)."""
        # depth of a line = how many narrowing steps it passes in a row; step k leaves no
        # line when no line reaches depth k, and the lines before step k are those of depth >= k-1
        best, before = 0, -1
        survivors: list[int] = []
        for li in self.by_item.get(item, ()):
            if ref is not None and (
                self.cid[li] != ref or (chosen is not None and self.lno[li] != chosen)
            ):
                continue
            if (warehouse is not None and self.wh[li] != warehouse) or (
                ref is None and self.ctype[li] == "DIS"
            ):
                depth = 1
            elif not self.ready[li]:
                depth = 2
            elif self.closed[li]:
                depth = 3
            elif not self.vfrom[li] <= day <= self.vto[li]:
                depth = 4
            elif not self.may_buy(li, customer):
                depth = 5
            elif qty % self.factor[li]:
                depth = 6
            else:
                survivors.append(li)
                continue
            if depth > best:
                best, before = depth, li
        if survivors:
            return self.search(survivors, ref is not None, qty)
        return -1, *self.describe(best + 1, before, item, customer, warehouse, ref, chosen, qty)

    def consume(self, li: int, qty: int) -> tuple[bool, bool]:
        """Consume `qty` on line `li`; return (opened now, closed now)."""
        self.avail[li] -= qty
        self.consumed[li] += qty
        self.taken[li] += 1
        opened = not self.opened[li]
        self.opened[li] = True
        cap = self.cap[li]
        closed = cap >= 0 and self.consumed[li] >= cap
        if closed:
            self.closed[li] = True
        return opened, closed


def _line_keys(ranked: pl.DataFrame) -> pl.DataFrame:
    s = pl.col
    return ranked.select(
        s("_li").cast(pl.Int64), "_ic", s("contract_id").alias("_lcid"), s("line_no").alias("_llno"),
        "contract_type", s("warehouse").alias("_lwh"),
        (s("active").fill_null(False) & s("initialized").fill_null(False)).alias("_ready"),
        "valid_from", "valid_to",
        s("customer").alias("_lcust"), "key_customers", "unit_factor",
    )  # fmt: skip


def _depth() -> pl.Expr:
    """On an (order, line) pair frame: how many narrowing steps (1-7) the line passes in a
    row, with the line closed for the order line when it closed before it (`_closed_by` <
    `_o`)."""
    s = pl.col
    steps = [
        s("contract_id").is_null()
        | ((s("_lcid") == s("contract_id")) & (s("line_no").is_null() | (s("_llno") == s("line_no")))),
        (s("warehouse").is_null() | (s("_lwh") == s("warehouse")))
        & (s("contract_id").is_not_null() | (s("contract_type") != "DIS")),
        s("_ready"),
        s("_closed_by") >= s("_o"),
        (s("valid_from").is_null() | (s("valid_from") <= s("order_date")))
        & (s("valid_to").is_null() | (s("order_date") <= s("valid_to"))),
        _may_buy(),
        (s("quantity") % s("unit_factor")) == 0,
    ]  # fmt: skip
    chain: Any = pl.when(~steps[0].fill_null(False)).then(0)
    for k, step in enumerate(steps[1:], 1):
        chain = chain.when(~step.fill_null(False)).then(k)
    return chain.otherwise(len(steps))


def _diagnose(
    todo: pl.DataFrame, ranked: pl.DataFrame, deferred: list[int], closed_by: list[int]
) -> pl.DataFrame:
    """For the order lines that no line passed when the walk reached them: the first
    narrowing step that leaves none, and the first line (search order) of the step before
    — set-based, after the walk.

    Step 4 (closed) is the only step that changes during the walk, and lines only close:
    a line is closed for order line `o` when it closed at an order line before `o`
    (`closed_by`), which is what the walk saw when it reached `o`.  The step is one past
    the deepest line, the line the first (search order) of that depth.  Returns `_o`,
    `reason`, `detail` (as `_Evaluator.describe`).
    """
    s = pl.col
    cols = ("item", "customer", "warehouse", "contract_id", "line_no")
    ords = (
        todo.lazy()
        .select(s("_o").cast(pl.Int64), "_ic", *cols, "order_date", "quantity")
        .join(pl.LazyFrame({"_o": deferred}, schema={"_o": pl.Int64}), on="_o", how="semi")
    )
    lk = _line_keys(ranked).with_columns(pl.Series("_closed_by", closed_by, dtype=pl.Int64))
    span = 1 << 32
    # deepest first, then the first in search order
    key = (_depth().cast(pl.Int64) * span + (span - 1 - s("_li"))).fill_null(0)
    deepest = (
        ords.join(lk.lazy(), on="_ic", how="left")
        .select("_o", key.alias("_k"))
        .group_by("_o")
        .agg(s("_k").max())
    )
    depth = s("_k") // span
    names = ranked.lazy().select(
        s("_li").cast(pl.Int64).alias("_before"),
        s("contract_id").alias("_bcid"),
        s("line_no").alias("_blno"),
        s("unit_factor").alias("_bfactor"),
    )
    step = s("_step")
    name = pl.format("contract {} line {}", s("_bcid"), s("_blno"))
    # the reasons and details of `_Evaluator.describe`
    reason = (
        pl.when((step == 1) & s("contract_id").is_null())
        .then(pl.lit(NO_CONTRACT_LINE))
        .when(step == 1)
        .then(pl.lit(OFF_CONTRACT_NORMAL_SOURCING))
        .when(step == 2)
        .then(pl.lit(NO_CONTRACT_LINE))
        .when(step == 3)
        .then(pl.lit(NOT_INITIALIZED))
        .when(step == 4)
        .then(pl.lit(LINE_IS_CLOSED))
        .when(step == 5)
        .then(pl.lit(CONTRACT_NOT_VALID))
        .when(step == 6)
        .then(pl.lit(CUSTOMER_NOT_ALLOWED))
        .otherwise(pl.lit(UNIT_MISMATCH))
    )
    detail = (
        pl.when((step == 1) & s("contract_id").is_null())
        .then(pl.format("no contract line for item {}", s("item")))
        .when((step == 1) & s("line_no").is_null())
        .then(pl.format("contract {} has no line for item {}; normal sourcing", s("contract_id"), s("item")))
        .when(step == 1)
        .then(pl.format("contract {} has no line {} for item {}; normal sourcing", s("contract_id"), s("line_no"), s("item")))
        .when((step == 2) & s("warehouse").is_not_null())
        .then(pl.format("no contract line for item {} in warehouse {}", s("item"), s("warehouse")))
        .when(step == 2)
        .then(pl.format("only DIS contract lines hold item {}; DIS needs a contract reference", s("item")))
        .when(step == 3)
        .then(pl.format("{} is not initialized (contract active and line received)", name))
        .when(step == 4).then(pl.format("{} is closed", name))
        .when(step == 5).then(pl.format("{} is not valid on the order date", name))
        .when(step == 6)
        .then(pl.format("customer {} may not buy from contract {}", s("customer"), s("_bcid")))
        .otherwise(pl.format("quantity {} is not a multiple of the unit factor {} of {}", s("quantity"), s("_bfactor"), name))
    )  # fmt: skip
    return (
        ords.join(deepest, on="_o", how="left")
        .with_columns(
            (depth + 1).alias("_step"),
            pl.when(depth > 0).then(span - 1 - s("_k") % span).otherwise(-1).alias("_before"),
        )
        .join(names, on="_before", how="left")
        .select(s("_o").cast(pl.UInt32), reason.alias("reason"), detail.alias("detail"))
        .collect()
    )


def _settle_isolated_lines(
    todo: pl.DataFrame,
    ranked: pl.DataFrame,
    pairs: pl.DataFrame,
    counts: np.ndarray,
    ev: _Evaluator,
    link: list[int],
    opened_at: list[int],
) -> list[int]:
    """Link, set-based, the order lines of contract lines that need no walk; return the rest.

    A contract line needs no walk when every order line that may take it has it as
    its only candidate, it is auto-assigned (or every such order line refers to
    its contract), it holds their whole quantity and it does not close: each of
    those order lines then finds it first with enough available, in any order.
    Such a line never closes and no other order line sees it, so the walk of the
    others is unchanged.
    """
    n = todo.height
    n_lines = ranked.height
    o_all = pairs.get_column("_o").to_numpy()
    li_all = pairs.get_column("_li").to_numpy()
    qty = todo.get_column("quantity").to_numpy()
    is_ref = todo.get_column("contract_id").is_not_null().to_numpy()
    single = (counts == 1)[o_all]  # the pair is its order line's only candidate
    shared = np.zeros(n_lines, dtype=bool)  # some order line has other candidates too
    shared[li_all[~single]] = True
    # A line that is not shared has only pairs of single order lines, and a shared line is
    # never settled here: everything below needs only the single pairs (a few, where many
    # lines are open to everyone: no array as long as all the pairs is made)
    o_arr = o_all[single].astype(np.int64)
    li_arr = li_all[single].astype(np.int64)
    del single
    not_all_ref = np.zeros(n_lines, dtype=bool)
    not_all_ref[li_arr[~is_ref[o_arr]]] = True
    demand = np.bincount(li_arr, weights=qty[o_arr], minlength=n_lines).astype(np.int64)
    taken = np.bincount(li_arr, minlength=n_lines)
    auto = ranked.get_column("auto_assign").fill_null(False).to_numpy()
    available = ranked.get_column("available").fill_null(0).to_numpy()
    consumed = ranked.get_column("consumed")
    cap = ranked.get_column("cap")
    under_cap = cap.is_null().to_numpy() | (
        consumed.is_not_null().to_numpy()
        & (consumed.fill_null(0).to_numpy() + demand < cap.fill_null(0).to_numpy())
    )
    ok = (
        (taken > 0)
        & ~shared
        & (auto | ~not_all_ref)
        & (demand <= available)
        & under_cap
        & ~ranked.get_column("available").is_null().to_numpy()
    )
    settled = ok[li_arr]
    o_set, li_set = o_arr[settled], li_arr[settled]
    for o, li in zip(o_set.tolist(), li_set.tolist(), strict=True):
        link[o] = li
    # pairs are sorted by order line: the first pair of a line is its first order line
    uniq, first_idx = np.unique(li_set, return_index=True)
    firsts = o_set[first_idx]
    for li, first in zip(uniq.tolist(), firsts.tolist(), strict=True):
        d = int(demand[li])
        ev.avail[li] -= d
        ev.consumed[li] += d
        ev.taken[li] += int(taken[li])
        if not ev.opened[li]:
            ev.opened[li] = True
            opened_at.append(first)
    done = np.zeros(n, dtype=bool)
    done[o_set] = True
    return np.flatnonzero(~done).tolist()


def allocate_order_lines(
    orders: pl.DataFrame,
    lines: pl.DataFrame,
    functions: FunctionsConfig,
    contracts: pl.DataFrame | None = None,
    *,
    reference: bool = False,
) -> Allocation:
    """Allocate order lines to contract lines and consume them (SPEC §7.5).

    `orders`: `ORDER_SCHEMA` plus `_line` (and `_file` when pooled), any order.
    `lines`: `CANDIDATE_SCHEMA`, the contract lines before the run.
    `contracts`: `contract_id`, `off_contract_sales` of every contract (default:
    those of `lines`).  `reference=True` evaluates every order line with the
    step-by-step rule instead of the fast path (same result; for tests).
    """
    lines = lines.select(list(CANDIDATE_SCHEMA)).cast(CANDIDATE_SCHEMA)  # type: ignore[arg-type]
    if contracts is None:
        contracts = (
            lines.select("contract_id")
            .unique()
            .with_columns(pl.lit(False).alias("off_contract_sales"))
        )
    pooled = FILE in orders.columns
    sort_cols = ["order_date", "order_no", "order_line", *([FILE] if pooled else []), LINE]
    ordered = orders.sort(sort_cols, maintain_order=True).with_row_index("_o")
    rejected = _static_rejects(ordered, lines, contracts)
    todo = ordered.join(rejected.select("_o"), on="_o", how="anti", maintain_order="left")
    todo = todo.drop("_o").with_row_index("_o")
    ranked = _rank_lines(lines)
    ev = _Evaluator(ranked, functions)
    n = todo.height

    link = [-1] * n
    reasons: dict[int, tuple[str | None, str | None]] = {}
    opened_at: list[int] = []
    closed_at: list[int] = []
    qty: list[int] = todo.get_column("quantity").to_list()
    ref_flags: list[bool] = todo.get_column("contract_id").is_not_null().to_list()
    todo_list: list[int] = list(range(n))
    if reference:
        offsets: list[int] = [0] * (n + 1)
        cand: Sequence[int] = []
    else:
        todo, ranked = _code_items_and_customers(todo, ranked)
        pairs = _candidate_pairs(todo, ranked)
        # the walk reads a few candidates of each order line: 4 bytes each, not a Python
        # int in a list (tens of millions of pairs when many lines are open to everyone)
        cand = array("I", pairs.get_column("_li").cast(pl.UInt32).to_numpy().tobytes())
        counts = np.bincount(pairs.get_column("_o").to_numpy(), minlength=n)
        offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()
    if reference:
        cols = todo.select("item", "customer", "warehouse", "contract_id", "line_no", "order_date")
        item_l = cols.get_column("item").to_list()
        cust_l = cols.get_column("customer").to_list()
        wh_l = cols.get_column("warehouse").to_list()
        ref_l = cols.get_column("contract_id").to_list()
        chosen_l = cols.get_column("line_no").to_list()
        day_l = _days(cols.get_column("order_date"), 0)
    deferred: list[int] = []
    if not reference:
        todo_list = _settle_isolated_lines(todo, ranked, pairs, counts, ev, link, opened_at)

    closed, auto, avail, icf = ev.closed, ev.auto, ev.avail, ev.icfullqt
    closed_by = ev.closed_by
    # search failures, detailed set-based after the walk: order line, reason, line, available
    miss_o: list[int] = []
    miss_auto: list[bool] = []
    miss_li: list[int] = []
    miss_avail: list[int] = []
    for o in todo_list:
        q = qty[o]
        chosen_li = -1
        start, end = offsets[o], offsets[o + 1]
        is_ref = ref_flags[o]
        for k in range(start, end):
            li = cand[k]
            if closed[li] or (not is_ref and not auto[li]):
                continue
            if avail[li] >= q:
                chosen_li = li
                break
            if not icf:
                break
        if chosen_li < 0:
            # steps 1-7 leave exactly the open static candidates: only the search decides
            # (`_Evaluator.search`): none of the eligible lines holds the quantity
            first_open = first_elig = auto_off = -1
            for k in range(start, end):
                li = cand[k]
                if closed[li]:
                    continue
                if first_open < 0:
                    first_open = li
                if is_ref or auto[li]:
                    if first_elig < 0:
                        first_elig = li
                elif auto_off < 0 and avail[li] >= q:
                    auto_off = li
            if first_open >= 0:
                first = auto_off if auto_off >= 0 else first_elig if first_elig >= 0 else first_open
                miss_o.append(o)
                miss_auto.append(auto_off >= 0)
                miss_li.append(first)
                miss_avail.append(avail[first])
                continue
            if not reference:
                # no line passes steps 1-7: the reason is worked out after the walk
                deferred.append(o)
                continue
            chosen_li, reason, detail = ev.evaluate(
                item_l[o], cust_l[o], wh_l[o], ref_l[o], chosen_l[o], day_l[o], q
            )
            if chosen_li < 0:
                reasons[o] = (reason, detail)
                continue
        link[o] = chosen_li
        was_opened, was_closed = ev.consume(chosen_li, q)
        if was_opened:
            opened_at.append(o)
        if was_closed:
            closed_at.append(o)
            closed_by[chosen_li] = o

    why = pl.concat(
        [
            *([_diagnose(todo, ranked, deferred, closed_by)] if deferred else []),
            pl.DataFrame(
                {
                    "_o": list(reasons.keys()),
                    "reason": [r for r, _ in reasons.values()],
                    "detail": [d for _, d in reasons.values()],
                },
                schema={"_o": pl.UInt32, "reason": pl.String, "detail": pl.String},
            ),
            _search_misses(ranked, miss_o, miss_auto, miss_li, miss_avail),
        ]
    )
    return _results(todo, ranked, ev, link, why, opened_at, closed_at, rejected, pooled)


def _search_misses(
    ranked: pl.DataFrame, o: list[int], auto_off: list[bool], li: list[int], avail: list[int]
) -> pl.DataFrame:
    """Reasons of the order lines whose search found no line (`_Evaluator.search`)."""
    s = pl.col
    name = pl.format("contract {} line {}", s("contract_id"), s("line_no"))
    return (
        pl.DataFrame(
            {"_o": o, "_auto_off": auto_off, "_li": li, "_avail": avail},
            schema={"_o": pl.UInt32, "_auto_off": pl.Boolean, "_li": pl.UInt32, "_avail": pl.Int64},
        )
        .join(ranked.select("_li", "contract_id", "line_no"), on="_li", how="left")
        .select(
            "_o",
            pl.when(s("_auto_off"))
            .then(pl.lit(AUTO_ASSIGN_OFF))
            .otherwise(pl.lit(INSUFFICIENT_QUANTITY))
            .alias("reason"),
            pl.when(s("_auto_off"))
            .then(pl.format("{} could take it but has auto-assign N", name))
            .otherwise(pl.format("{} can take {}", name, s("_avail")))
            .alias("detail"),
        )
    )


def _results(
    todo: pl.DataFrame,
    ranked: pl.DataFrame,
    ev: _Evaluator,
    link: list[int],
    why: pl.DataFrame,
    opened_at: list[int],
    closed_at: list[int],
    rejected: pl.DataFrame,
    pooled: bool,
) -> Allocation:
    s = pl.col
    line_ids = ranked.select(
        s("_li").cast(pl.Int64), s("contract_id").alias("_cid"), s("line_no").alias("_lno")
    )
    allocated = (
        todo.with_columns(pl.Series("_li", link, dtype=pl.Int64))
        .join(line_ids, on="_li", how="left", maintain_order="left")
        .join(why, on="_o", how="left", maintain_order="left")
        .with_columns(s("_cid").alias("contract_id"), s("_lno").alias("line_no"))
    )
    keep = [*ORDER_SCHEMA, "reason", "detail", LINE, *([FILE] if pooled else [])]
    allocations = allocated.select(keep)

    linked = allocated.filter(s("_li") >= 0)
    file_col = [s(FILE)] if pooled else []
    base = linked.select(
        "_o",
        s("_cid").alias("contract_id"),
        s("_lno").alias("line_no"),
        "order_no",
        "quantity",
        *file_col,
    )
    created = base.with_columns(pl.lit(0).alias("_k"), pl.lit(ORDER_LINE_CREATED).alias("event"))
    opened = base.filter(s("_o").is_in(opened_at)).with_columns(
        pl.lit(1).alias("_k"),
        pl.lit(LINE_OPENED).alias("event"),
        pl.lit(None, pl.Int64).alias("quantity"),
    )
    closed = base.filter(s("_o").is_in(closed_at)).with_columns(
        pl.lit(2).alias("_k"),
        pl.lit(LINE_CLOSED).alias("event"),
        pl.lit(None, pl.Int64).alias("quantity"),
    )
    order = [
        "contract_id",
        "line_no",
        "event",
        "order_type",
        "order_no",
        "quantity",
        *([FILE] if pooled else []),
    ]
    events = (
        pl.concat([created, opened, closed], how="diagonal")
        .sort("_o", "_k")
        .with_columns(pl.lit("S").alias("order_type"))
        .select(order)
    )

    taken = np.asarray(ev.taken)
    touched = np.flatnonzero(taken > 0)
    consumption = pl.DataFrame(
        {
            "contract_id": [ev.cid[i] for i in touched],
            "line_no": [ev.lno[i] for i in touched],
            "consumed": [ev.consumed[i] for i in touched],
            "order_lines": taken[touched].tolist(),
            "status": ["C" if ev.closed[i] else "O" for i in touched],
        },
        schema={"contract_id": pl.String, "line_no": pl.Int64, "consumed": pl.Int64,
                "order_lines": pl.Int64, "status": pl.String},
    )  # fmt: skip
    reject_cols = (["file"] if pooled else []) + list(REJECT_SCHEMA)
    rejects = rejected.sort("_o").select(reject_cols).cast(REJECT_SCHEMA)  # type: ignore[arg-type]
    return Allocation(allocations, consumption, events, rejects)


# --- against the store ---------------------------------------------------------------------

RAW_AVAILABLE_SQL = """(CASE WHEN l.contract_quantity IS NULL THEN l.received - l.ncc
    ELSE least(l.received - l.ncc, l.contract_quantity * l.unit_factor) END - l.consumed)"""
"""Stock units of a line `l`: received minus NCC (at most the contract quantity) minus
consumed — negative only in a broken state, which the invariants look for."""
AVAILABLE_SQL = f"greatest({RAW_AVAILABLE_SQL}, 0)"
"""Available stock units of a line `l`, never below 0."""


def load_candidate_lines(
    con: duckdb.DuckDBPyConnection,
    items: list[str] | None = None,
    chosen: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The candidate-line frame (`CANDIDATE_SCHEMA`) of the given items (all when None),
    with the lines that order lines choose (`chosen`: contract_id, line_no) whatever
    their item, and the contracts frame (`contract_id`, `off_contract_sales`)."""
    where = ""
    params: list[Any] = []
    if items is not None:
        where = "WHERE l.item IN (SELECT UNNEST(?::VARCHAR[]))"
        params = [items]
        if chosen is not None and chosen.height:
            # a chosen line that holds another item must be seen to say so (§7.5 step 1)
            where += """ OR (l.contract_id, l.line_no) IN (
                SELECT UNNEST(?::VARCHAR[]), UNNEST(?::BIGINT[]))"""
            params += [
                chosen.get_column("contract_id").to_list(),
                chosen.get_column("line_no").to_list(),
            ]
    lines = con.sql(
        f"""
        SELECT l.contract_id, l.line_no, l.item, c.contract_type,
               coalesce(l.warehouse, c.warehouse) AS warehouse,
               c.active, l.initialized, l.status,
               CASE WHEN l.start_date IS NULL THEN c.start_date
                    WHEN c.start_date IS NULL THEN l.start_date
                    ELSE greatest(l.start_date, c.start_date) END AS valid_from,
               CASE WHEN l.end_date IS NULL THEN c.end_date
                    WHEN c.end_date IS NULL THEN l.end_date
                    ELSE least(l.end_date, c.end_date) END AS valid_to,
               l.reception_date,
               CASE WHEN c.contract_type = 'CBS' THEN coalesce(l.reserved_for, c.customer)
                    ELSE c.customer END AS customer,
               CASE WHEN c.customer IS NULL AND c.contract_key IS NOT NULL
                    THEN coalesce(k.customers, []::VARCHAR[]) END AS key_customers,
               l.auto_assign, l.unit_factor, {AVAILABLE_SQL} AS available, l.consumed,
               l.contract_quantity * l.unit_factor AS cap
        FROM contract_lines l JOIN contracts c USING (contract_id)
        LEFT JOIN (SELECT contract_key, list(customer ORDER BY customer) AS customers
                   FROM contract_keys GROUP BY contract_key) k ON k.contract_key = c.contract_key
        {where}""",
        params=params,
    ).pl()
    contracts = con.sql("SELECT contract_id, off_contract_sales FROM contracts").pl()
    return lines.cast(CANDIDATE_SCHEMA), contracts  # type: ignore[arg-type]


def apply_orders(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext) -> FileResult:
    """`orders_*.csv` (§7.5): allocate the run's order lines and write the results back.

    `rows` are the valid rows of all the run's order files, concatenated, with
    `_line` and (when pooled) `_file`.  An (`order_no`, `order_line`) applied in
    an earlier run is rejected.  When `rows` carry `_file`, the returned rejects
    carry a `file` column first (the reject frame otherwise); `source_file` of the
    log and allocations is the row's file, else `ctx.source_file`.
    """
    pooled = FILE in rows.columns
    orders = orders_from_rows(rows)
    seen = _already_seen(con, orders)
    if seen.height:
        orders = orders.join(seen.select(LINE, *([FILE] if pooled else [])), on=[LINE, *([FILE] if pooled else [])], how="anti", maintain_order="left")  # fmt: skip
    items = orders.get_column("item").unique().sort().to_list()
    chosen = (
        orders.filter(pl.col("contract_id").is_not_null() & pl.col("line_no").is_not_null())
        .select("contract_id", pl.col("line_no").cast(pl.Int64))
        .unique()
    )
    lines, contracts = load_candidate_lines(con, items, chosen)
    result = allocate_order_lines(orders, lines, ctx.config.functions, contracts)
    _write_back(con, ctx, result, pooled)
    rejects = pl.concat([seen.select(result.rejects.columns), result.rejects], how="vertical")
    rejects = rejects.sort([*(["file"] if pooled else []), "line"])
    by_file: dict[str, int] = {}
    if pooled:
        counts = result.allocations.group_by(FILE).len()
        by_file = dict(
            zip(counts.get_column(FILE).to_list(), counts.get_column("len").to_list(), strict=True)
        )
    return OrdersResult(
        rejects=rejects, rows_applied=result.allocations.height, rows_applied_by_file=by_file
    )


def _already_seen(con: duckdb.DuckDBPyConnection, orders: pl.DataFrame) -> pl.DataFrame:
    """Rejects for order lines applied in an earlier run ((order_no, order_line) is unique for ever)."""
    pooled = FILE in orders.columns
    keys = orders.select("order_no", "order_line").unique()
    con.register("_cmi_order_keys", keys)
    try:
        seen = con.sql(
            """SELECT s.order_no, s.order_line, min(s.run_id) AS run_id
               FROM contract_order_lines s JOIN _cmi_order_keys k USING (order_no, order_line)
               GROUP BY ALL"""
        ).pl()
    finally:
        con.unregister("_cmi_order_keys")
    if seen.height == 0:
        return pl.DataFrame(schema={**({"file": pl.String()} if pooled else {}), **REJECT_SCHEMA, LINE: pl.Int64(), **({FILE: pl.String()} if pooled else {})})  # fmt: skip
    hit = orders.join(seen, on=["order_no", "order_line"], how="inner", maintain_order="left")
    return hit.select(
        *([pl.col(FILE).alias("file")] if pooled else []),
        pl.col(LINE).cast(pl.Int64).alias("line"),
        pl.lit("order_line").alias("column"),
        pl.col("order_line").cast(pl.String).alias("value"),
        pl.lit("order_line_seen").alias("rule"),
        pl.format(
            "order line {}/{} was already processed in run {}; (order_no, order_line) is unique for ever",
            pl.col("order_no"),
            pl.col("order_line"),
            pl.col("run_id"),
        ).alias("message"),
        pl.col(LINE),
        *([pl.col(FILE)] if pooled else []),
    )


def _write_back(
    con: duckdb.DuckDBPyConnection, ctx: RunContext, result: Allocation, pooled: bool
) -> None:
    source = pl.col(FILE) if pooled else pl.lit(ctx.source_file)
    alloc = result.allocations
    if result.consumption.height:
        con.register("_cmi_consumption", result.consumption)
        try:
            con.execute(
                """UPDATE contract_lines l SET consumed = c.consumed,
                       order_lines = l.order_lines + c.order_lines, status = c.status
                   FROM _cmi_consumption c
                   WHERE l.contract_id = c.contract_id AND l.line_no = c.line_no"""
            )
        finally:
            con.unregister("_cmi_consumption")
        refresh_header_status(
            con, result.consumption.get_column("contract_id").unique().sort().to_list()
        )
    if alloc.height:
        start = con.execute(
            "SELECT coalesce(max(seq), 0) FROM contract_allocations WHERE run_id = ?", [ctx.run_id]
        ).fetchall()[0][0]
        rows = alloc.with_row_index("seq", offset=start + 1).select(
            pl.lit(ctx.run_id).alias("run_id"),
            pl.col("seq").cast(pl.Int64),
            "order_no", "order_line", "order_date", "customer", "item", "quantity",
            "contract_id", "line_no", "reason", "detail",
            source.alias("source_file"),
            pl.col(LINE).cast(pl.Int64).alias("line"),
        )  # fmt: skip
        seen = alloc.select(
            "order_no", "order_line", pl.lit(ctx.run_id).alias("run_id"), source.alias("source_file"),
            "contract_id", "line_no",
        )  # fmt: skip
        con.register("_cmi_alloc", rows)
        con.register("_cmi_seen", seen)
        try:
            allocations, seen_lines = (
                appended_to(con, t) for t in ("contract_allocations", "contract_order_lines")
            )
            con.execute(f"INSERT INTO {allocations} SELECT * FROM _cmi_alloc")
            con.execute(f"INSERT INTO {seen_lines} SELECT * FROM _cmi_seen")
        finally:
            con.unregister("_cmi_alloc")
            con.unregister("_cmi_seen")
    if result.events.height:
        start = con.execute("SELECT coalesce(max(seq), 0) FROM contract_log").fetchall()[0][0]
        write_log_frame(con, ctx, result.events, start, pl.col(FILE) if pooled else ctx.source_file)


__all__ = [
    "Allocation",
    "OrdersResult",
    "CANDIDATE_SCHEMA",
    "ORDER_SCHEMA",
    "allocate_order_lines",
    "apply_orders",
    "load_candidate_lines",
    "orders_from_rows",
]
