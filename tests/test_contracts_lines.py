"""Contract lines: per-type rules, units, quantities, statuses and their log (SPEC §7.2, §7.3)."""

from __future__ import annotations

import datetime as dt

import pytest
from test_contracts_support import (
    ITEM_A,
    ITEM_B,
    ITEM_C,
    apply,
    cline,
    header,
    header_state,
    line_state,
    log_events,
    make_ctx,
    make_store,
    rules,
)

from schemas.contracts import ContractLinesFile, ContractsFile, OrdersFile, ReceiptsFile
from transforms.allocation import apply_orders, load_candidate_lines
from transforms.contract_reports import contract_balance_report
from transforms.contracts import apply_contract_lines, apply_contracts, apply_receipts


def _store(*headers: dict[str, str]):  # type: ignore[no-untyped-def]
    con = make_store()
    result = apply(apply_contracts, con, ContractsFile, list(headers))
    assert result.rejects.height == 0
    return con


def _order(no: str, qty: int, item: str = ITEM_A, **extra: str) -> dict[str, str]:
    row = {
        "order_no": no,
        "order_line": "1",
        "order_date": "2024-03-01",
        "customer": "CUST1",
        "item": item,
        "quantity": str(qty),
    }
    row.update(extra)
    return row


def _receive(
    con, cid: str, qty: int, process: str = "supply_deposit", line_no: int = 1, **extra: str
):  # type: ignore[no-untyped-def]
    row = {
        "contract_id": cid,
        "line_no": str(line_no),
        "quantity": str(qty),
        "receipt_date": "2024-02-01",
        "process": process,
    }
    row.update(extra)
    return apply(apply_receipts, con, ReceiptsFile, [row])


def test_new_line_is_new_and_logged_with_defaults() -> None:
    con = _store(header("K1", "CDS"))
    result = apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1, item=ITEM_C)])
    assert result.rows_applied == 1
    ln = line_state(con, "K1", 1)
    assert (
        ln["status"],
        ln["contract_unit"],
        ln["unit_factor"],
        ln["auto_assign"],
        ln["contract_quantity"],
    ) == (
        "N",
        "BOX",
        1,
        True,
        None,
    )  # fmt: skip  -- contract unit defaults to the product's stock unit
    assert log_events(con, "K1")[-1] == ("K1", 1, "Contract line was created", None, None, None)


def test_line_needs_an_existing_contract_and_item() -> None:
    con = _store(header("K1", "CDS"))
    result = apply(apply_contract_lines, con, ContractLinesFile, [
        cline("K9", 1), cline("K1", 1, item="00000000000031"), {"contract_id": "K1", "line_no": "2"},
    ])  # fmt: skip
    assert rules(result) == ["unknown_contract", "unknown_item", "required"]


@pytest.mark.parametrize("ctype", ["CBS", "WBS", "DIS"])
def test_contract_quantity_is_required_for_cbs_wbs_dis(ctype: str) -> None:
    con = _store(header("K1", ctype))
    assert rules(apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1)])) == [
        "contract_quantity_required"
    ]


@pytest.mark.parametrize(("ctype", "extra"), [("SCS", {}), ("SCS", {"logistic": "Y"}), ("DIS", {})])
def test_cost_price_is_required_for_scs_and_dis(ctype: str, extra: dict[str, str]) -> None:
    con = _store(header("K1", ctype, **extra))
    row = cline("K1", 1, contract_quantity="5")
    del row["cost_price"]
    assert rules(apply(apply_contract_lines, con, ContractLinesFile, [row])) == [
        "cost_price_required"
    ]


def test_cost_price_is_optional_for_cds() -> None:
    con = _store(header("K1", "CDS"))
    row = cline("K1", 1)
    del row["cost_price"]
    assert apply(apply_contract_lines, con, ContractLinesFile, [row]).rows_applied == 1


def test_line_dates_must_lie_within_the_header_dates() -> None:
    con = _store(header("K1", "CDS", start_date="2024-01-01", end_date="2024-12-31"))
    result = apply(apply_contract_lines, con, ContractLinesFile, [
        cline("K1", 1, start_date="2023-12-31", end_date="2024-06-30"),
        cline("K1", 2, start_date="2024-02-01", end_date="2025-01-01"),
        cline("K1", 3, start_date="2025-02-01"),
        cline("K1", 4, start_date="2024-03-01", end_date="2024-02-01"),
        cline("K1", 5, start_date="2024-02-01", end_date="2024-11-30"),
        cline("K1", 6, start_date="2024-02-01"),
        cline("K1", 7),
    ])  # fmt: skip
    assert rules(result) == [
        "outside_header_dates", "outside_header_dates", "outside_header_dates", "date_order",
    ]  # fmt: skip
    assert "2024-01-01 to 2024-12-31" in result.rejects["message"][0]
    assert result.rows_applied == 3  # a blank line date takes the header's (guide)


def test_unit_cannot_change_once_received() -> None:
    con = _store(header("K1", "CDS", active="Y"))
    apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1, contract_unit="PK", unit_factor="6"), cline("K1", 2)],
    )
    _receive(con, "K1", 2)
    result = apply(apply_contract_lines, con, ContractLinesFile, [
        cline("K1", 1, contract_unit="CS", unit_factor="6"), cline("K1", 1, contract_unit="PK", unit_factor="12"),
        cline("K1", 2, contract_unit="CS", unit_factor="12"),
    ])  # fmt: skip
    assert rules(result) == ["unit_frozen", "unit_frozen"]
    assert line_state(con, "K1", 2)["unit_factor"] == 12


def test_quantity_never_below_consumed() -> None:
    con = _store(header("K1", "WBS", active="Y"))
    apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1, contract_quantity="10", unit_factor="2")],
    )
    apply_orders(con, _rows([_order("O1", 12)]), make_ctx())
    assert line_state(con, "K1", 1)["consumed"] == 12
    result = apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1, contract_quantity="5", unit_factor="2")],
    )
    assert rules(result) == ["below_consumed"]
    assert "consumed 12" in result.rejects["message"][0]


def test_lowering_quantity_to_consumed_closes_the_line() -> None:
    con = _store(header("K1", "WBS", active="Y"))
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1, contract_quantity="10")])
    apply_orders(con, _rows([_order("O1", 4)]), make_ctx())
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1, contract_quantity="4")])
    ln = line_state(con, "K1", 1)
    assert (ln["status"], ln["received"]) == ("C", 4)
    assert [e[2] for e in log_events(con, "K1")][-2:] == [
        "Contract line was changed",
        "Contract line was closed",
    ]
    assert header_state(con, "K1")["status"] == "C"


def test_raising_an_initialized_cds_line_needs_cmi_mult() -> None:
    con = _store(header("K1", "CDS", active="Y"))
    apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1, contract_quantity="10"), cline("K1", 2, contract_quantity="10")],
    )
    _receive(con, "K1", 10)
    result = apply(apply_contract_lines, con, ContractLinesFile, [
        cline("K1", 1, contract_quantity="20"), cline("K1", 1), cline("K1", 2, contract_quantity="20"),
        cline("K1", 1, contract_quantity="8"),
    ])  # fmt: skip
    assert rules(result) == ["quantity_frozen", "quantity_frozen"]  # line 2 is not initialized yet
    with_mult = apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1, contract_quantity="30")],
        make_ctx(cmi_mult=True),
    )
    assert with_mult.rows_applied == 1 and line_state(con, "K1", 1)["contract_quantity"] == 30


def test_raising_a_closed_wbs_line_reopens_it() -> None:
    con = _store(header("K1", "WBS", active="Y"))
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1, contract_quantity="5")])
    apply_orders(con, _rows([_order("O1", 5)]), make_ctx())
    assert line_state(con, "K1", 1)["status"] == "C" and header_state(con, "K1")["status"] == "C"
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1, contract_quantity="8")])
    ln = line_state(con, "K1", 1)
    assert (ln["status"], ln["received"]) == ("O", 8)
    assert header_state(con, "K1")["status"] == "O"
    assert [e[2] for e in log_events(con, "K1")][-2:] == [
        "Contract line was changed",
        "Contract line was opened",
    ]


def test_manual_close_and_open() -> None:
    con = _store(header("K1", "CDS"))
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1), cline("K1", 2)])
    apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1, status="C"), cline("K1", 2, status="o")],
    )
    assert line_state(con, "K1", 1)["status"] == "C"
    assert line_state(con, "K1", 2)["status"] == "O"
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1, status="O")])
    assert line_state(con, "K1", 1)["status"] == "O"
    events = [(e[1], e[2]) for e in log_events(con, "K1") if "opened" in e[2] or "closed" in e[2]]
    assert events == [
        (1, "Contract line was closed"),
        (2, "Contract line was opened"),
        (1, "Contract line was opened"),
    ]


def test_sold_out_line_cannot_be_opened_by_hand() -> None:
    con = _store(header("K1", "WBS", active="Y"))
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1, contract_quantity="5")])
    apply_orders(con, _rows([_order("O1", 5)]), make_ctx())
    result = apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1, contract_quantity="5", status="O")],
    )
    assert rules(result) == ["line_sold_out"]


def test_line_without_quantity_never_closes_by_itself() -> None:
    con = _store(header("K1", "CDS", active="Y"))
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1)])
    _receive(con, "K1", 5)
    apply_orders(con, _rows([_order("O1", 5)]), make_ctx())
    ln = line_state(con, "K1", 1)
    assert (ln["status"], ln["consumed"], ln["received"]) == ("O", 5, 5)


def test_line_added_to_an_active_cbs_contract_is_initialized() -> None:
    con = _store(header("K1", "CBS", active="Y"))
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1, contract_quantity="7")])
    ln = line_state(con, "K1", 1)
    assert (ln["initialized"], ln["received"], ln["reserved_for"]) == (True, 7, "CUST1")


def test_item_cannot_change_once_in_use() -> None:
    con = _store(header("K1", "CDS", active="Y"))
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1), cline("K1", 2)])
    _receive(con, "K1", 5)
    result = apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1, item=ITEM_B), cline("K1", 2, item=ITEM_B)],
    )
    assert rules(result) == ["item_frozen"]


def test_delete_line_only_while_nothing_refers_to_it() -> None:
    con = _store(header("K1", "CDS", active="Y"))
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1), cline("K1", 2)])
    _receive(con, "K1", 5)
    result = apply(apply_contract_lines, con, ContractLinesFile, [
        {"action": "delete", "contract_id": "K1", "line_no": "1"},
        {"action": "delete", "contract_id": "K1", "line_no": "2"},
        {"action": "delete", "contract_id": "K1", "line_no": "3"},
    ])  # fmt: skip
    assert rules(result) == ["line_in_use", "unknown_line"]
    assert log_events(con, "K1")[-1] == ("K1", 2, "Contract line was deleted", None, None, None)


def _rows(records: list[dict[str, str]]):  # type: ignore[no-untyped-def]
    from test_contracts_support import file_rows

    return file_rows(OrdersFile, records)


def test_a_line_beyond_the_stock_quantity_limit_is_rejected_and_reports_still_run() -> None:
    """contract_quantity x unit_factor past the limit would overflow the state's sums."""
    con = _store(header("K1", "CDS", active="Y"))
    result = apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [
            cline("K1", 1, contract_quantity="999999999999999999", unit_factor="1000"),
            cline("K1", 2, contract_quantity="10"),
        ],
    )
    assert rules(result) == ["quantity_too_large"] and result.rows_applied == 1
    assert contract_balance_report(con, dt.date(2024, 6, 1)).height == 1  # state stays readable


def test_a_line_without_warehouse_is_searched_in_its_contracts_warehouse() -> None:
    con = _store(header("K1", "WDS", active="Y"))
    apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1), cline("K1", 2, warehouse="W9")],
    )
    lines, _ = load_candidate_lines(con)
    by_line = dict(zip(lines["line_no"].to_list(), lines["warehouse"].to_list(), strict=True))
    assert by_line == {1: "WWDS", 2: "W9"}  # the header's warehouse is W<type>


@pytest.mark.parametrize(
    ("off_contract", "reason", "rule"),
    [("Y", "OFF_CONTRACT_NORMAL_SOURCING", None), ("N", None, "OFF_CONTRACT_NOT_ALLOWED")],
)
def test_a_chosen_line_of_another_item_is_off_contract_whatever_else_the_run_orders(
    off_contract: str, reason: str | None, rule: str | None
) -> None:
    """§7.5 step 1: the order names line 1 of K1, which holds item B; the order is for A.
    The line exists, and the order line is off-contract even when no order of the run is for B."""
    from transforms.contract_reports import allocations_report

    con = _store(header("K1", "WDS", active="Y", off_contract_sales=off_contract))
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1, item=ITEM_B)])
    ctx = make_ctx()
    result = apply_orders(con, _rows([_order("O1", 2, contract_id="K1", line_no="1")]), ctx)
    assert rules(result) == ([rule] if rule else [])
    allocations = allocations_report(con, ctx.run_id)
    assert allocations.get_column("reason").to_list() == ([reason] if reason else [])
    if reason:
        assert "contract K1 has no line 1 for item" in allocations.get_column("detail")[0]
