"""Contract reports and invariants (SPEC §10, §8)."""

from __future__ import annotations

import datetime as dt

from test_contracts_support import ITEM_A, apply, cline, file_rows, header, make_ctx, make_store

from schemas.contracts import (
    REPORT_COLUMNS,
    AllocationsReport,
    ContractBalanceReport,
    ContractLinesFile,
    ContractLogReport,
    ContractsFile,
    ContractsReport,
    OrdersFile,
    ReceiptsFile,
)
from transforms.allocation import apply_orders
from transforms.contract_reports import (
    allocations_report,
    contract_balance_report,
    contract_invariants,
    contract_log_report,
    contracts_report,
)
from transforms.contracts import apply_contract_lines, apply_contracts, apply_receipts


def _day():  # type: ignore[no-untyped-def]
    con = make_store()
    apply(apply_contracts, con, ContractsFile, [
        header("K1", "CDS", active="Y", end_date="2024-02-28"), header("K2", "WBS", active="Y"),
    ])  # fmt: skip
    apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1, contract_quantity="10"), cline("K2", 1, contract_quantity="5")],
    )
    apply(apply_receipts, con, ReceiptsFile, [
        {"contract_id": "K1", "line_no": "1", "quantity": "10", "receipt_date": "2024-02-01", "process": "supply_deposit"},
    ])  # fmt: skip
    orders = [
        {
            "order_no": "O1",
            "order_line": "1",
            "order_date": "2024-02-10",
            "customer": "CUST1",
            "item": ITEM_A,
            "quantity": "4",
        }
    ]
    apply_orders(con, file_rows(OrdersFile, orders), make_ctx(run_id="R2"))
    return con


def test_reports_have_exactly_the_spec_columns_and_formats() -> None:
    con = _day()
    reports = {
        "contracts.csv": (contracts_report(con), ContractsReport),
        "contract_balance.csv": (
            contract_balance_report(con, dt.date(2024, 3, 1)),
            ContractBalanceReport,
        ),
        "contract_log.csv": (contract_log_report(con, "R2"), ContractLogReport),
        "allocations.csv": (allocations_report(con, "R2"), AllocationsReport),
    }
    for name, (frame, model) in reports.items():
        assert frame.columns == REPORT_COLUMNS[name]
        model.validate(frame)
    contracts = contracts_report(con).rows(named=True)
    assert contracts[0]["active"] == "Y" and contracts[0]["activated_at"] == "2024-03-01T02:00:00"
    balance = contract_balance_report(con, dt.date(2024, 3, 1)).rows(named=True)
    assert [(b["contract_id"], b["expired"], b["end_date"], b["available"]) for b in balance] == [
        ("K1", "Y", "2024-02-28", 6), ("K2", "N", None, 5),
    ]  # fmt: skip
    # expired means the end date is before the business date, not on it
    on_the_day = contract_balance_report(con, dt.date(2024, 2, 28)).rows(named=True)
    assert [b["expired"] for b in on_the_day] == ["N", "N"]


def test_run_reports_select_the_run() -> None:
    con = _day()
    # the line was opened by its reception already: the order line logs only its creation
    assert contract_log_report(con, "R2").get_column("event").to_list() == ["Order line created"]
    assert allocations_report(con, "R2").height == 1
    assert allocations_report(con, "R9").height == 0
    assert (
        contract_log_report(con, "20240301T020000").get_column("event").to_list()[0]
        == "Contract was created"
    )


def test_invariants_hold_and_detect_a_broken_state() -> None:
    con = _day()
    assert contract_invariants(con) == {
        "contract_consumed_within_quantity": True,
        "contract_available_not_negative": True,
    }
    con.execute("UPDATE contract_lines SET consumed = 11 WHERE contract_id = 'K1'")
    assert contract_invariants(con) == {
        "contract_consumed_within_quantity": False,
        "contract_available_not_negative": False,
    }
