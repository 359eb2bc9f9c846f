"""Allocation and consumption of sales order lines (SPEC §7.5), on literal frames."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from test_contracts_support import (
    ITEM_A,
    ITEM_B,
    apply,
    cline,
    file_rows,
    header,
    header_state,
    line_state,
    log_events,
    make_ctx,
    make_store,
)

from schemas.contracts import ContractLinesFile, ContractsFile, OrdersFile
from transforms.allocation import (
    CANDIDATE_SCHEMA,
    ORDER_SCHEMA,
    allocate_order_lines,
    apply_orders,
)
from transforms.context import FunctionsConfig
from transforms.contracts import apply_contract_lines, apply_contracts

OFF = FunctionsConfig()
ICF = FunctionsConfig(icfullqt=True)


def cand(contract_id: str, line_no: int = 1, **kw: Any) -> dict[str, Any]:
    """A candidate line: initialized WBS-like line of item A, 100 available, open to everyone."""
    row: dict[str, Any] = {
        "contract_id": contract_id, "line_no": line_no, "item": ITEM_A, "contract_type": "WBS",
        "warehouse": "W1", "active": True, "initialized": True, "status": "O", "valid_from": None,
        "valid_to": None, "reception_date": dt.date(2024, 1, 1), "customer": None,
        "key_customers": None, "auto_assign": True, "unit_factor": 1, "available": 100,
        "consumed": 0, "cap": 100,
    }  # fmt: skip
    row.update(kw)
    return row


def order(no: str, qty: int, line: int = 1, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "order_no": no, "order_line": line, "order_date": dt.date(2024, 3, 1), "customer": "CUST1",
        "item": ITEM_A, "quantity": qty, "warehouse": None, "contract_id": None, "line_no": None,
    }  # fmt: skip
    row.update(kw)
    return row


def run(
    orders: list[dict[str, Any]], lines: list[dict[str, Any]], functions: FunctionsConfig = OFF,
    off_contract: dict[str, bool] | None = None, reference: bool = False,
):  # type: ignore[no-untyped-def]  # fmt: skip
    o = pl.DataFrame(orders, schema=ORDER_SCHEMA).with_columns(
        pl.int_range(2, len(orders) + 2, dtype=pl.Int64).alias("_line")
    )
    ln = pl.DataFrame(lines, schema=CANDIDATE_SCHEMA)
    contracts = None
    if off_contract is not None:
        contracts = pl.DataFrame(
            {"contract_id": list(off_contract), "off_contract_sales": list(off_contract.values())}
        )
    fast = allocate_order_lines(o, ln, functions, contracts)
    slow = allocate_order_lines(o, ln, functions, contracts, reference=True)
    assert fast.allocations.equals(slow.allocations)
    assert fast.events.equals(slow.events)
    return slow if reference else fast


def outcome(result) -> list[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    return list(
        result.allocations.select(
            "order_no", "order_line", "contract_id", "line_no", "reason"
        ).iter_rows()
    )


def reasons(result) -> list[str | None]:  # type: ignore[no-untyped-def]
    return result.allocations.get_column("reason").to_list()


# --- order, uniqueness, rejects -------------------------------------------------------------


def test_order_lines_are_taken_in_date_number_line_order_not_file_order() -> None:
    result = run(
        [
            order("B", 60, order_date=dt.date(2024, 3, 2)),
            order("A", 60, line=2),
            order("A", 60, line=10),
            order("A", 60, line=1),
        ],
        [cand("K1", cap=200, available=200)],
    )
    assert outcome(result) == [
        ("A", 1, "K1", 1, None), ("A", 2, "K1", 1, None), ("A", 10, "K1", 1, None),
        ("B", 1, None, None, "INSUFFICIENT_QUANTITY"),
    ]  # fmt: skip
    assert result.allocations["detail"][3] == "contract K1 line 1 can take 20"


def test_repeated_order_line_is_rejected_within_the_run() -> None:
    result = run([order("A", 5), order("A", 5), order("A", 5, line=2)], [cand("K1")])
    assert result.rejects["rule"].to_list() == ["duplicate_order_line"]
    assert result.rejects["line"].to_list() == [3]
    assert result.allocations.height == 2


def test_line_no_without_contract_is_rejected() -> None:
    result = run([order("A", 5, line_no=1)], [cand("K1")])
    assert result.rejects["rule"].to_list() == ["line_without_contract"]
    assert result.allocations.height == 0


def test_an_unknown_contract_reference_is_rejected() -> None:
    result = run([order("A", 5, contract_id="K9")], [cand("K1")], off_contract={"K1": True})
    assert result.rejects["rule"].to_list() == ["unknown_contract"]
    assert result.allocations.height == 0


@pytest.mark.parametrize(
    ("off_contract", "reason", "rule"),
    [(True, "OFF_CONTRACT_NORMAL_SOURCING", None), (False, None, "OFF_CONTRACT_NOT_ALLOWED")],
)
def test_a_chosen_line_the_contract_does_not_have_is_off_contract(
    off_contract: bool, reason: str | None, rule: str | None
) -> None:
    """§7.5: the chosen line is the only candidate and step 1 keeps the lines of the item in
    the referenced contract; a line the contract does not have leaves none, so the order
    line is off-contract — normal sourcing, or rejected OFF_CONTRACT_NOT_ALLOWED — like a
    chosen line of another item (only a repeat and a line_no without contract_id are
    rejected rows besides)."""
    result = run(
        [order("B", 5, contract_id="K1", line_no=7)],
        [cand("K1")],
        off_contract={"K1": off_contract},
    )
    assert result.rejects["rule"].to_list() == ([rule] if rule else [])
    assert reasons(result) == ([reason] if reason else [])
    where = "contract K1 has no line 7 for item"
    if reason:
        assert result.allocations["detail"][0].startswith(where)
    else:
        assert result.rejects["message"][0].startswith(where)


# --- step 1: item and contract reference -----------------------------------------------------


def test_step1_no_line_for_the_item() -> None:
    result = run([order("A", 5, item=ITEM_B)], [cand("K1")])
    assert reasons(result) == ["NO_CONTRACT_LINE"]
    assert result.allocations["detail"][0] == f"no contract line for item {ITEM_B}"


def test_step1_reference_without_the_item_off_contract_allowed_is_normal_sourcing() -> None:
    result = run(
        [order("A", 5, item=ITEM_B, contract_id="K1")], [cand("K1")], off_contract={"K1": True}
    )
    assert reasons(result) == ["OFF_CONTRACT_NORMAL_SOURCING"]
    assert result.rejects.height == 0


def test_step1_reference_without_the_item_off_contract_not_allowed_is_rejected() -> None:
    result = run(
        [order("A", 5, item=ITEM_B, contract_id="K1")], [cand("K1")], off_contract={"K1": False}
    )
    assert result.rejects["rule"].to_list() == ["OFF_CONTRACT_NOT_ALLOWED"]
    assert result.allocations.height == 0


def test_step1_reference_restricts_to_that_contract() -> None:
    lines = [cand("K1", valid_to=dt.date(2024, 4, 1)), cand("K2", valid_to=dt.date(2024, 12, 1))]
    result = run([order("A", 5), order("B", 5, contract_id="K2")], lines)
    assert outcome(result) == [("A", 1, "K1", 1, None), ("B", 1, "K2", 1, None)]


# --- step 2: warehouse and DIS ---------------------------------------------------------------


def test_step2_warehouse_must_match() -> None:
    result = run([order("A", 5, warehouse="W2"), order("B", 5, warehouse="W1")], [cand("K1")])
    assert reasons(result) == ["NO_CONTRACT_LINE", None]
    assert "in warehouse W2" in result.allocations["detail"][0]


def test_step2_dis_only_with_a_reference() -> None:
    lines = [cand("D1", contract_type="DIS")]
    result = run([order("A", 5), order("B", 5, contract_id="D1")], lines)
    assert outcome(result) == [("A", 1, None, None, "NO_CONTRACT_LINE"), ("B", 1, "D1", 1, None)]


# --- steps 3-7 -----------------------------------------------------------------------------


def test_step3_not_initialized_or_not_active() -> None:
    result = run(
        [order("A", 5), order("B", 5, item=ITEM_B)],
        [cand("K1", initialized=False, available=0), cand("K2", item=ITEM_B, active=False)],
    )
    assert reasons(result) == ["NOT_INITIALIZED", "NOT_INITIALIZED"]


def test_step4_closed_line() -> None:
    result = run([order("A", 5)], [cand("K1", status="C")])
    assert reasons(result) == ["LINE_CLOSED"]


def test_step5_order_date_within_header_and_line_validity() -> None:
    lines = [cand("K1", valid_from=dt.date(2024, 2, 1), valid_to=dt.date(2024, 2, 29))]
    result = run(
        [order("A", 5, order_date=dt.date(2024, 1, 31)), order("B", 5, order_date=dt.date(2024, 2, 29)),
         order("C", 5, order_date=dt.date(2024, 3, 1))],
        lines,
    )  # fmt: skip
    assert reasons(result) == ["CONTRACT_NOT_VALID", None, "CONTRACT_NOT_VALID"]


def test_step6_customer_key_and_everyone() -> None:
    lines = [
        cand("K1", item=ITEM_A, customer="CUST9"),
        cand("K2", item=ITEM_B, key_customers=["CUST2", "CUST3"]),
    ]
    result = run(
        [order("A", 5), order("B", 5, item=ITEM_B), order("C", 5, item=ITEM_B, customer="CUST3"),
         order("D", 5, customer="CUST9")],
        lines,
    )  # fmt: skip
    assert reasons(result) == ["CUSTOMER_NOT_ALLOWED", "CUSTOMER_NOT_ALLOWED", None, None]


def test_step6_cbs_stock_is_for_its_customer_only_even_with_a_reference() -> None:
    lines = [cand("B1", contract_type="CBS", customer="CUST1")]
    result = run(
        [order("A", 5, customer="CUST2", contract_id="B1"), order("B", 5, customer="CUST1")], lines
    )
    assert reasons(result) == ["CUSTOMER_NOT_ALLOWED", None]


def test_step7_unit_factor_must_divide_the_quantity() -> None:
    lines = [cand("K1", unit_factor=6, cap=600, available=600)]
    result = run([order("A", 10), order("B", 12)], lines)
    assert reasons(result) == ["UNIT_MISMATCH", None]
    assert "multiple of the unit factor 6" in result.allocations["detail"][0]


def test_first_failing_step_gives_the_reason() -> None:
    # closed line and a not-yet-valid line: step 4 removes K1 only, step 5 removes K2
    lines = [cand("K1", status="C"), cand("K2", valid_from=dt.date(2024, 6, 1))]
    assert reasons(run([order("A", 5)], lines)) == ["CONTRACT_NOT_VALID"]
    # every line closed: step 4 is the reason even if dates would also fail
    lines = [cand("K1", status="C", valid_from=dt.date(2024, 6, 1))]
    assert reasons(run([order("A", 5)], lines)) == ["LINE_CLOSED"]


EXPIRED = {"valid_to": dt.date(2024, 2, 1)}  # the orders are of 2024-03-01


@pytest.mark.parametrize(
    ("steps", "line", "order_kw", "reason"),
    [
        ("2/3", {"warehouse": "W1", "initialized": False, "available": 0}, {"warehouse": "W2"},
         "NO_CONTRACT_LINE"),
        ("3/4", {"initialized": False, "available": 0, "status": "C"}, {}, "NOT_INITIALIZED"),
        ("3/4", {"active": False, "status": "C"}, {}, "NOT_INITIALIZED"),
        ("4/5", {"status": "C", **EXPIRED}, {}, "LINE_CLOSED"),
        ("5/6", {"customer": "CUST9", **EXPIRED}, {}, "CONTRACT_NOT_VALID"),
        ("5/6", {"key_customers": ["CUST2"], "valid_from": dt.date(2024, 6, 1)}, {},
         "CONTRACT_NOT_VALID"),
        ("5/7", {"unit_factor": 6, **EXPIRED}, {}, "CONTRACT_NOT_VALID"),
        ("6/7", {"customer": "CUST9", "unit_factor": 6}, {}, "CUSTOMER_NOT_ALLOWED"),
    ],
)  # fmt: skip
def test_a_line_failing_two_steps_at_once_gets_the_earlier_steps_reason(
    steps: str, line: dict[str, Any], order_kw: dict[str, Any], reason: str
) -> None:
    """§7.5 (issue 18 item 9): the steps narrow in their order, so a line that fails two of
    them is dropped by the earlier one — e.g. expired on the order date and restricted to
    another customer is CONTRACT_NOT_VALID, not CUSTOMER_NOT_ALLOWED — in the fast path
    and in the step-by-step reference alike."""
    orders, lines = [order("A", 10, **order_kw)], [cand("K1", **line)]
    assert reasons(run(orders, lines)) == [reason], steps
    assert reasons(run(orders, lines, reference=True)) == [reason], steps


# --- search order, ICFULLQT, auto-assign, chosen line --------------------------------------


def test_search_order_closest_end_date_then_oldest_reception_then_id_then_line() -> None:
    lines = [
        cand("K5", valid_to=None, reception_date=dt.date(2023, 1, 1)),
        cand("K4", valid_to=dt.date(2024, 9, 1)),
        cand("K1", valid_to=dt.date(2024, 6, 1), reception_date=dt.date(2024, 2, 1)),
        cand("K2", valid_to=dt.date(2024, 6, 1), reception_date=dt.date(2024, 1, 1), line_no=2),
        cand("K2", valid_to=dt.date(2024, 6, 1), reception_date=dt.date(2024, 1, 1), line_no=1),
        cand("K3", valid_to=dt.date(2024, 6, 1), reception_date=dt.date(2024, 1, 1)),
    ]
    result = run([order(f"O{i}", 100) for i in range(7)], lines)
    taken = [(c, n) for _, _, c, n, _ in outcome(result)]
    # K1 sorts first by id but was received last: the older receptions go first
    assert taken == [
        ("K2", 1), ("K2", 2), ("K3", 1), ("K1", 1), ("K4", 1), ("K5", 1), (None, None),
    ]  # fmt: skip


def test_without_icfullqt_the_first_line_that_is_short_leaves_the_order_unlinked() -> None:
    lines = [cand("K1", valid_to=dt.date(2024, 6, 1), available=5), cand("K2", available=100)]
    result = run([order("A", 10)], lines)
    assert reasons(result) == ["INSUFFICIENT_QUANTITY"]
    assert result.allocations["detail"][0] == "contract K1 line 1 can take 5"


def test_with_icfullqt_the_search_goes_on_to_a_line_that_covers_it() -> None:
    lines = [cand("K1", valid_to=dt.date(2024, 6, 1), available=5), cand("K2", available=100)]
    assert outcome(run([order("A", 10)], lines, ICF)) == [("A", 1, "K2", 1, None)]
    short = [cand("K1", valid_to=dt.date(2024, 6, 1), available=5), cand("K2", available=7)]
    result = run([order("A", 10)], short, ICF)
    assert reasons(result) == ["INSUFFICIENT_QUANTITY"]
    assert result.allocations["detail"][0] == "contract K1 line 1 can take 5"


def test_an_order_line_is_never_split() -> None:
    lines = [cand("K1", available=6, cap=6), cand("K2", available=6, cap=6)]
    result = run([order("A", 10)], lines, ICF)
    assert reasons(result) == ["INSUFFICIENT_QUANTITY"]
    assert result.consumption.height == 0


def test_auto_assign_n_is_passed_over_without_reference() -> None:
    lines = [cand("K1", valid_to=dt.date(2024, 6, 1), auto_assign=False), cand("K2")]
    assert outcome(run([order("A", 10)], lines)) == [("A", 1, "K2", 1, None)]


def test_auto_assign_off_is_the_reason_when_only_such_a_line_could_take_it() -> None:
    lines = [cand("K1", auto_assign=False), cand("K2", available=3)]
    result = run([order("A", 10)], lines)
    assert reasons(result) == ["AUTO_ASSIGN_OFF"]
    assert (
        result.allocations["detail"][0] == "contract K1 line 1 could take it but has auto-assign N"
    )


def test_auto_assign_does_not_matter_with_a_reference() -> None:
    lines = [cand("K1", auto_assign=False)]
    assert outcome(run([order("A", 10, contract_id="K1")], lines)) == [("A", 1, "K1", 1, None)]


def test_chosen_line_is_the_only_candidate() -> None:
    lines = [
        cand("K1", 1, valid_to=dt.date(2024, 6, 1)),
        cand("K1", 2, auto_assign=False, available=8),
    ]
    result = run(
        [order("A", 5, contract_id="K1", line_no=2), order("B", 5, contract_id="K1", line_no=2)],
        lines,
    )
    assert outcome(result) == [
        ("A", 1, "K1", 2, None),
        ("B", 1, None, None, "INSUFFICIENT_QUANTITY"),
    ]


# --- consumption, closing, events ---------------------------------------------------------


def test_consumption_closes_the_line_at_contract_quantity_and_logs() -> None:
    lines = [
        cand("K1", status="N", cap=10, available=10),
        cand("K2", valid_to=None, reception_date=dt.date(2024, 2, 1)),
    ]
    result = run([order("A", 4), order("B", 6), order("C", 1)], lines)
    assert outcome(result) == [
        ("A", 1, "K1", 1, None),
        ("B", 1, "K1", 1, None),
        ("C", 1, "K2", 1, None),
    ]
    assert result.consumption.sort("contract_id").rows() == [
        ("K1", 1, 10, 2, "C"),
        ("K2", 1, 1, 1, "O"),
    ]
    assert result.events.rows() == [
        ("K1", 1, "Order line created", "S", "A", 4),
        ("K1", 1, "Contract line was opened", "S", "A", None),
        ("K1", 1, "Order line created", "S", "B", 6),
        ("K1", 1, "Contract line was closed", "S", "B", None),
        ("K2", 1, "Order line created", "S", "C", 1),
    ]


def test_line_closed_during_the_run_gives_line_closed_to_later_orders() -> None:
    lines = [cand("K1", cap=10, available=10)]
    result = run([order("A", 10), order("B", 1)], lines)
    assert reasons(result) == [None, "LINE_CLOSED"]


def test_line_without_quantity_never_closes() -> None:
    lines = [cand("K1", cap=None, available=10)]
    result = run([order("A", 10), order("B", 1)], lines)
    assert reasons(result) == [None, "INSUFFICIENT_QUANTITY"]
    assert result.consumption.rows() == [("K1", 1, 10, 1, "O")]


# --- through the store: pooled files, uniqueness for ever, header status ---------------------


def _orders_frame(records: list[dict[str, str]], file: str) -> pl.DataFrame:
    return file_rows(OrdersFile, records).with_columns(pl.lit(file).alias("_file"))


def _ord(no: str, qty: int, line: str = "1", date: str = "2024-03-01", **kw: str) -> dict[str, str]:
    row = {
        "order_no": no,
        "order_line": line,
        "order_date": date,
        "customer": "CUST1",
        "item": ITEM_A,
        "quantity": str(qty),
    }
    row.update(kw)
    return row


def test_pooled_order_files_are_processed_together_and_rejects_name_their_file() -> None:
    con = make_store()
    apply(apply_contracts, con, ContractsFile, [header("K1", "WBS", active="Y")])
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1, contract_quantity="10")])
    a = _orders_frame([_ord("B", 6, date="2024-03-02"), _ord("X", 1, line_no="1")], "orders_a.csv")
    b = _orders_frame([_ord("A", 6), _ord("B", 6, date="2024-03-02")], "orders_b.csv")
    result = apply_orders(con, pl.concat([a, b], how="diagonal_relaxed"), make_ctx())
    assert result.rejects.select("file", "line", "rule").rows() == [
        ("orders_a.csv", 3, "line_without_contract"),
        ("orders_b.csv", 3, "duplicate_order_line"),
    ]
    assert result.rows_applied == 2
    assert result.rows_applied_by_file == {"orders_a.csv": 1, "orders_b.csv": 1}  # type: ignore[attr-defined]
    got = con.execute(
        "SELECT order_no, contract_id, reason, source_file FROM contract_allocations ORDER BY seq"
    ).fetchall()
    assert got == [
        ("A", "K1", None, "orders_b.csv"),
        ("B", None, "INSUFFICIENT_QUANTITY", "orders_a.csv"),
    ]
    assert con.execute(
        "SELECT DISTINCT source_file FROM contract_log WHERE event = 'Order line created'"
    ).fetchall() == [("orders_b.csv",)]


def test_order_line_is_unique_for_ever() -> None:
    con = make_store()
    apply(apply_contracts, con, ContractsFile, [header("K1", "WBS", active="Y")])
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1, contract_quantity="10")])
    first = apply_orders(con, file_rows(OrdersFile, [_ord("A", 1)]), make_ctx(run_id="R1"))
    assert first.rows_applied == 1
    again = apply_orders(
        con, file_rows(OrdersFile, [_ord("A", 1), _ord("A", 1, line="2")]), make_ctx(run_id="R2")
    )
    assert again.rejects["rule"].to_list() == ["order_line_seen"]
    assert "run R1" in again.rejects["message"][0]
    assert line_state(con, "K1", 1)["consumed"] == 2


def test_consumption_updates_line_and_header_status() -> None:
    con = make_store()
    apply(apply_contracts, con, ContractsFile, [header("K1", "CBS", active="Y")])
    apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1, contract_quantity="5"), cline("K1", 2, contract_quantity="5")],
    )
    assert header_state(con, "K1")["status"] == "N"
    apply_orders(con, file_rows(OrdersFile, [_ord("A", 5)]), make_ctx())
    assert (line_state(con, "K1", 1)["status"], header_state(con, "K1")["status"]) == ("C", "O")
    apply_orders(con, file_rows(OrdersFile, [_ord("B", 5)]), make_ctx())
    assert header_state(con, "K1")["status"] == "C"
    assert [e[2] for e in log_events(con, "K1")][-3:] == [
        "Order line created",
        "Contract line was opened",
        "Contract line was closed",
    ]


@pytest.mark.parametrize("functions", [OFF, ICF])
def test_fast_path_and_reference_agree_on_a_mixed_case(functions: FunctionsConfig) -> None:
    lines = [
        cand("K1", valid_to=dt.date(2024, 6, 1), available=7, cap=7),
        cand("K2", auto_assign=False, available=50),
        cand("K3", customer="CUST2", available=20),
        cand("K4", unit_factor=5, available=40, reception_date=dt.date(2023, 1, 1)),
    ]
    orders = [order(f"O{i}", q, customer=c) for i, (q, c) in enumerate(
        [(5, "CUST1"), (5, "CUST1"), (10, "CUST2"), (10, "CUST1"), (3, "CUST2"), (45, "CUST1"), (60, "CUST1")]
    )]  # fmt: skip
    run(orders, lines, functions)  # asserts equality inside
