"""Property tests of allocation (SPEC §7.5, §8 invariants), with Hypothesis.

For random contract lines and order streams: consumed never exceeds the contract
quantity, available never goes negative, every order line is linked at most
once, and the fast path agrees with the step-by-step reference rule.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_contracts_support import ITEM_A, ITEM_B, apply, file_rows, make_ctx, make_store

from schemas.contracts import ContractLinesFile, ContractsFile, OrdersFile, ReceiptsFile
from transforms.allocation import CANDIDATE_SCHEMA, ORDER_SCHEMA, allocate_order_lines, apply_orders
from transforms.context import FunctionsConfig
from transforms.contract_reports import contract_balance_report, contract_invariants
from transforms.contracts import apply_contract_lines, apply_contracts, apply_receipts

DAY0 = dt.date(2024, 3, 1)
days = st.integers(-5, 5).map(lambda d: DAY0 + dt.timedelta(days=d))
items = st.sampled_from([ITEM_A, ITEM_B])
customers = st.sampled_from(["C1", "C2", "C3"])


@st.composite
def candidate_lines(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(1, 7))
    rows = []
    for i in range(n):
        cap = draw(st.one_of(st.none(), st.integers(1, 40)))
        received = draw(st.integers(0, 50)) if cap is None else cap
        consumed = draw(st.integers(0, received))
        available = received - consumed
        status = (
            "C" if cap is not None and consumed == cap else draw(st.sampled_from(["N", "O", "C"]))
        )
        has_key = draw(st.booleans())
        rows.append({
            "contract_id": f"K{i % 3}", "line_no": i + 1, "item": draw(items),
            "contract_type": draw(st.sampled_from(["WBS", "CDS", "DIS", "CBS"])),
            "warehouse": draw(st.sampled_from(["W1", "W2"])), "active": draw(st.booleans()),
            "initialized": draw(st.booleans()), "status": status,
            "valid_from": draw(st.one_of(st.none(), days)), "valid_to": draw(st.one_of(st.none(), days)),
            "reception_date": draw(st.one_of(st.none(), days)),
            "customer": draw(st.one_of(st.none(), customers)),
            "key_customers": draw(st.lists(customers, max_size=2, unique=True)) if has_key else None,
            "auto_assign": draw(st.booleans()), "unit_factor": draw(st.sampled_from([1, 1, 2, 3])),
            "available": available, "consumed": consumed, "cap": cap,
        })  # fmt: skip
    return rows


@st.composite
def order_stream(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(0, 40))
    rows = []
    for i in range(n):
        ref = draw(st.one_of(st.none(), st.sampled_from(["K0", "K1", "K2"])))
        rows.append({
            "order_no": f"O{draw(st.integers(0, 12))}", "order_line": draw(st.integers(1, 3)),
            "order_date": draw(days), "customer": draw(customers), "item": draw(items),
            "quantity": draw(st.integers(1, 15)), "warehouse": draw(st.one_of(st.none(), st.just("W1"))),
            "contract_id": ref,
            "line_no": draw(st.one_of(st.none(), st.integers(1, 7))) if ref else None,
            "_line": i + 2,
        })  # fmt: skip
    return rows


@settings(max_examples=300, deadline=None)
@given(candidate_lines(), order_stream(), st.booleans(), st.booleans())
def test_allocation_invariants(lines, orders, icfullqt, off_contract) -> None:  # type: ignore[no-untyped-def]
    functions = FunctionsConfig(icfullqt=icfullqt)
    lf = pl.DataFrame(lines, schema=CANDIDATE_SCHEMA)
    of = pl.DataFrame(orders, schema={**ORDER_SCHEMA, "_line": pl.Int64})
    contracts = pl.DataFrame(
        {"contract_id": ["K0", "K1", "K2"], "off_contract_sales": [off_contract] * 3}
    )
    fast = allocate_order_lines(of, lf, functions, contracts)
    slow = allocate_order_lines(of, lf, functions, contracts, reference=True)
    assert fast.allocations.equals(slow.allocations)
    assert fast.consumption.equals(slow.consumption)

    alloc = fast.allocations
    # every order line at most once, and every input row either allocated or rejected
    assert alloc.select("order_no", "order_line").is_duplicated().sum() == 0
    assert alloc.height + fast.rejects.height == len(orders)
    linked = alloc.filter(pl.col("contract_id").is_not_null())
    assert linked.get_column("reason").null_count() == linked.height
    per_line = linked.group_by("contract_id", "line_no").agg(
        pl.col("quantity").sum().alias("taken")
    )
    state = lf.join(per_line, on=["contract_id", "line_no"], how="left").with_columns(
        pl.col("taken").fill_null(0)
    )
    # available never negative; consumed never above the contract quantity
    assert (state["available"] - state["taken"]).min() >= 0  # type: ignore[operator]
    over = state.filter(
        pl.col("cap").is_not_null() & (pl.col("consumed") + pl.col("taken") > pl.col("cap"))
    )
    assert over.height == 0
    # a linked line passed the static steps
    chosen = linked.join(lf, on=["contract_id", "line_no"], how="left", suffix="_l")
    assert chosen.filter(~(pl.col("active") & pl.col("initialized"))).height == 0
    assert chosen.filter(pl.col("item") != pl.col("item_l")).height == 0
    assert chosen.filter((pl.col("quantity") % pl.col("unit_factor")) != 0).height == 0


@st.composite
def contract_day(draw):  # type: ignore[no-untyped-def]
    ctypes = draw(
        st.lists(
            st.sampled_from(["CDS", "SCS", "WCS", "WDS", "CBS", "WBS", "DIS"]),
            min_size=1,
            max_size=4,
        )
    )
    headers, lines, receipts = [], [], []
    process = {"CDS": "supply_deposit", "SCS": "supply", "WDS": "supply", "WCS": "external_supply"}
    for i, ctype in enumerate(ctypes):
        cid = f"K{i}"
        headers.append({
            "contract_id": cid, "description": "d", "contract_type": ctype, "currency": "EUR",
            "handler": "H", "responsible": "R", "warehouse": "W1", "active": "Y",
            "customer": "C1" if ctype in {"CDS", "WCS", "CBS", "DIS"} else (draw(st.sampled_from(["", "C2"]))),
            "supplier": "S1", "off_contract_sales": "Y",
        })  # fmt: skip
        for n in range(1, draw(st.integers(1, 3)) + 1):
            qty = draw(st.integers(1, 30))
            factor = draw(st.sampled_from([1, 2]))
            needs_qty = ctype in {"CBS", "WBS", "DIS"} or draw(st.booleans())
            lines.append({
                "contract_id": cid, "line_no": str(n), "item": draw(items), "cost_price": "1",
                "contract_quantity": str(qty) if needs_qty else "", "unit_factor": str(factor),
            })  # fmt: skip
            if ctype in process:
                got = draw(st.integers(1, qty if needs_qty else 40))
                receipts.append({
                    "contract_id": cid, "line_no": str(n), "quantity": str(got), "receipt_date": "2024-02-01",
                    "process": process[ctype], "ncc_quantity": str(draw(st.integers(0, got))),
                })  # fmt: skip
    orders = [
        {"order_no": f"O{i}", "order_line": "1", "order_date": "2024-03-01", "customer": draw(customers),
         "item": draw(items), "quantity": str(draw(st.integers(1, 20)))}
        for i in range(draw(st.integers(0, 30)))
    ]  # fmt: skip
    return headers, lines, receipts, orders


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contract_day(), st.booleans())
def test_store_invariants_hold_after_a_random_contract_day(day, icfullqt) -> None:  # type: ignore[no-untyped-def]
    headers, lines, receipts, orders = day
    con = make_store()
    ctx = make_ctx(icfullqt=icfullqt)
    apply(apply_contracts, con, ContractsFile, headers, ctx)
    apply(apply_contract_lines, con, ContractLinesFile, lines, ctx)
    if receipts:
        apply(apply_receipts, con, ReceiptsFile, receipts, ctx)
    if orders:
        apply_orders(con, file_rows(OrdersFile, orders), ctx)
    assert all(contract_invariants(con).values())
    balance = contract_balance_report(con, DAY0)
    assert balance.filter(pl.col("available") < 0).height == 0
