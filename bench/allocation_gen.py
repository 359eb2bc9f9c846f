"""Synthetic contract lines and order lines for the allocation benchmark (SPEC §7.5).

Shape (defaults): 1,000,000 order lines against 100,000 contract lines over
5,000 items.  80% of the items are held on customer-specific lines (CBS/CDS:
one customer per line, so an order line meets at most one of them); 20% of the
items sit on several competing lines open to everyone (WBS/SCS), with different
end dates, reception dates, some auto-assign N and some unit factors, and less
stock than demand, so lines close during the run and the search order matters.
About 10% of the order lines are meant to stay unlinked for a reason (wrong
customer, unknown item, a reference to a contract without the item).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from transforms.allocation import CANDIDATE_SCHEMA, ORDER_SCHEMA
from transforms.codes import gs1_check_digit

DAY0 = dt.date(2024, 1, 1)


def item_codes(n: int) -> list[str]:
    """`n` valid GTIN-14 product codes."""
    return [(body := f"0{4000000000000 + i:012d}") + gs1_check_digit(body) for i in range(n)]


def generate(
    orders: int = 1_000_000, lines: int = 100_000, items: int = 5_000, seed: int = 7
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(orders frame `ORDER_SCHEMA` + `_line`, candidate lines `CANDIDATE_SCHEMA`, contracts)."""
    rng = np.random.default_rng(seed)
    codes = np.array(item_codes(items))
    per_item = max(1, lines // items)
    competing = rng.random(items) < 0.20
    n_lines = items * per_item
    li_item = np.repeat(np.arange(items), per_item)
    li_pos = np.tile(np.arange(per_item), items)
    li_comp = competing[li_item]
    n_customers = 2_000
    li_customer = np.where(li_comp, -1, rng.integers(0, n_customers, n_lines))
    # one contract per 10 lines of an item group
    contract_no = li_item * ((per_item + 9) // 10) + li_pos // 10
    contract_id = np.char.add("K", contract_no.astype(str))
    ctype = np.where(
        li_comp, np.where(li_pos % 2 == 0, "WBS", "SCS"), np.where(li_pos % 2 == 0, "CBS", "CDS")
    )
    valid_to = np.where(rng.random(n_lines) < 0.5, rng.integers(30, 400, n_lines), -1)
    reception = rng.integers(-300, 0, n_lines)
    factor = np.where(li_comp & (rng.random(n_lines) < 0.2), 2, 1)
    auto = ~(li_comp & (rng.random(n_lines) < 0.1))
    demand_per_item = orders / items * 5
    stock = np.where(
        li_comp,
        rng.integers(1, max(2, int(demand_per_item * 0.8 / per_item * 2)), n_lines),
        rng.integers(1, max(2, int(demand_per_item * 1.5 / per_item * 2)), n_lines),
    )
    stock = (stock // factor + 1) * factor
    has_cap = rng.random(n_lines) < 0.8
    status = np.where(rng.random(n_lines) < 0.02, "C", "O")
    customers = np.char.add("C", np.arange(n_customers).astype(str))
    lines_df = pl.DataFrame(
        {
            "contract_id": contract_id,
            "line_no": (li_pos % 10 + 1).astype(np.int64),
            "item": codes[li_item],
            "contract_type": ctype,
            "warehouse": np.where(li_comp, "W1", "W2"),
            "active": np.ones(n_lines, dtype=bool),
            "initialized": rng.random(n_lines) < 0.98,
            "status": status,
            "valid_from": None,
            "valid_to": [None if v < 0 else DAY0 + dt.timedelta(days=int(v)) for v in valid_to],
            "reception_date": [DAY0 + dt.timedelta(days=int(v)) for v in reception],
            "customer": [None if c < 0 else customers[c] for c in li_customer],
            "key_customers": None,
            "auto_assign": auto,
            "unit_factor": factor.astype(np.int64),
            "available": stock.astype(np.int64),
            "consumed": np.zeros(n_lines, dtype=np.int64),
            "cap": np.where(has_cap, stock, -1).astype(np.int64),
        }
    ).with_columns(pl.when(pl.col("cap") >= 0).then(pl.col("cap")).alias("cap"))
    lines_df = lines_df.cast(CANDIDATE_SCHEMA)  # type: ignore[arg-type]

    o_item = rng.integers(0, items, orders)
    # a customer that holds a line of the item (90%) or any customer
    pick = rng.integers(0, per_item, orders)
    line_cust = li_customer[o_item * per_item + pick]
    o_cust = np.where(
        (line_cust >= 0) & (rng.random(orders) < 0.9),
        line_cust,
        rng.integers(0, n_customers, orders),
    )
    qty = rng.integers(1, 10, orders)
    unknown = rng.random(orders) < 0.01
    item_col = np.where(unknown, "09999999999993", codes[o_item])
    ref = np.where(rng.random(orders) < 0.02, contract_id[o_item * per_item + pick], None)
    dates = rng.integers(0, 60, orders)
    orders_df = pl.DataFrame(
        {
            "order_no": np.char.add("SO", (np.arange(orders) // 5).astype(str)),
            "order_line": (np.arange(orders) % 5 + 1).astype(np.int64),
            "order_date": [DAY0 + dt.timedelta(days=int(d)) for d in dates],
            "customer": customers[o_cust],
            "item": item_col,
            "quantity": qty.astype(np.int64),
            "warehouse": None,
            "contract_id": pl.Series(ref.tolist(), dtype=pl.String),
            "line_no": None,
        }
    ).cast(ORDER_SCHEMA)  # type: ignore[arg-type]
    orders_df = orders_df.with_row_index("_line", offset=2).with_columns(
        pl.col("_line").cast(pl.Int64)
    )
    contracts = (
        lines_df.select("contract_id")
        .unique()
        .with_columns(
            (pl.col("contract_id").str.slice(1).cast(pl.Int64) % 2 == 0).alias("off_contract_sales")
        )
    )
    return orders_df, lines_df, contracts
