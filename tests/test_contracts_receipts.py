"""Receptions: initialization of CDS, SCS, WCS and WDS lines (SPEC §7.4)."""

from __future__ import annotations

import datetime as dt

import pytest
from test_contracts_support import (
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

from schemas.contracts import ContractLinesFile, ContractsFile, ReceiptsFile
from transforms.contracts import apply_contract_lines, apply_contracts, apply_receipts


def _store(ctype: str, *lines: dict[str, str], active: str = "Y", **extra: str):  # type: ignore[no-untyped-def]
    con = make_store()
    apply(apply_contracts, con, ContractsFile, [header("K1", ctype, active=active, **extra)])
    result = apply(apply_contract_lines, con, ContractLinesFile, list(lines) or [cline("K1", 1)])
    assert result.rejects.height == 0, result.rejects.to_dicts()
    return con


def _rcpt(
    qty: int, process: str, line_no: int = 1, date: str = "2024-02-01", **extra: str
) -> dict[str, str]:
    row = {
        "contract_id": "K1",
        "line_no": str(line_no),
        "quantity": str(qty),
        "receipt_date": date,
        "process": process,
    }
    row.update(extra)
    return row


@pytest.mark.parametrize(
    ("ctype", "process", "order_type", "extra"),
    [
        ("CDS", "supply_deposit", "S", {}),
        ("SCS", "supply", "P", {}),
        ("SCS", "supply", "P", {"logistic": "Y"}),
        ("WDS", "supply", "P", {}),
        ("WCS", "external_supply", "P", {}),
        ("WCS", "internal_supply", "S", {}),
    ],
)
def test_reception_initializes_the_line_and_logs_a_completed_supply_order(
    ctype: str, process: str, order_type: str, extra: dict[str, str]
) -> None:
    con = _store(ctype, **extra)
    result = apply(apply_receipts, con, ReceiptsFile, [_rcpt(10, process, supply_order="PO1")])
    assert result.rows_applied == 1, result.rejects.to_dicts()
    ln = line_state(con, "K1", 1)
    assert (ln["initialized"], ln["received"], ln["status"], ln["reception_date"]) == (
        True,
        10,
        "O",
        dt.date(2024, 2, 1),
    )
    assert header_state(con, "K1")["status"] == "O"
    assert log_events(con, "K1")[-3:] == [
        ("K1", 1, "Order line created", order_type, "PO1", 10),
        ("K1", 1, "Contract line was opened", order_type, "PO1", None),
        ("K1", 1, "Order line received", order_type, "PO1", 10),
    ]


@pytest.mark.parametrize(
    ("ctype", "process"),
    [("CDS", "supply"), ("SCS", "supply_deposit"), ("WCS", "supply"), ("WDS", "internal_supply")],
)
def test_process_must_fit_the_contract_type(ctype: str, process: str) -> None:
    con = _store(ctype)
    assert rules(apply(apply_receipts, con, ReceiptsFile, [_rcpt(5, process)])) == [
        "process_mismatch"
    ]


@pytest.mark.parametrize("ctype", ["CBS", "WBS", "DIS"])
def test_buffer_and_dis_lines_take_no_reception(ctype: str) -> None:
    con = _store(ctype, cline("K1", 1, contract_quantity="5"))
    assert rules(apply(apply_receipts, con, ReceiptsFile, [_rcpt(5, "supply")])) == ["no_reception"]


def test_contract_must_be_active() -> None:
    con = _store("CDS", active="N")
    result = apply(apply_receipts, con, ReceiptsFile, [_rcpt(5, "supply_deposit")])
    assert rules(result) == ["not_active"]
    assert line_state(con, "K1", 1)["initialized"] is False


def test_unknown_contract_or_line_is_rejected() -> None:
    con = _store("CDS")
    result = apply(
        apply_receipts,
        con,
        ReceiptsFile,
        [
            _rcpt(5, "supply_deposit", line_no=9),
            {**_rcpt(5, "supply_deposit"), "contract_id": "K9"},
        ],
    )
    assert rules(result) == ["unknown_line", "unknown_contract"]


def test_second_reception_is_rejected_without_cmi_mult() -> None:
    con = _store("CDS", cline("K1", 1, contract_quantity="100"))
    result = apply(
        apply_receipts,
        con,
        ReceiptsFile,
        [_rcpt(40, "supply_deposit"), _rcpt(10, "supply_deposit")],
    )
    assert rules(result) == ["second_reception"]
    assert "already received on 2024-02-01" in result.rejects["message"][0]


def test_cmi_mult_takes_several_receptions_within_the_contract_quantity() -> None:
    con = _store("CDS", cline("K1", 1, contract_quantity="100", unit_factor="2"))
    ctx = make_ctx(cmi_mult=True)
    result = apply(apply_receipts, con, ReceiptsFile, [
        _rcpt(40, "supply_deposit"), _rcpt(60, "supply_deposit", date="2024-02-10"), _rcpt(1, "supply_deposit"),
    ], ctx)  # fmt: skip
    assert rules(result) == ["above_contract_quantity"]
    ln = line_state(con, "K1", 1)
    assert (ln["received"], ln["receptions"], ln["reception_date"]) == (200, 2, dt.date(2024, 2, 1))
    # the line is opened by its first reception only
    opened = [e for e in log_events(con, "K1") if e[2] == "Contract line was opened"]
    assert len(opened) == 1


def test_cmi_mult_without_quantity_has_no_limit() -> None:
    con = _store("WDS")
    result = apply(
        apply_receipts,
        con,
        ReceiptsFile,
        [_rcpt(10**6, "supply"), _rcpt(10**6, "supply")],
        make_ctx(cmi_mult=True),
    )
    assert result.rows_applied == 2
    assert line_state(con, "K1", 1)["received"] == 2 * 10**6


def test_single_reception_cannot_exceed_the_contract_quantity() -> None:
    con = _store("CDS", cline("K1", 1, contract_quantity="10"))
    assert rules(apply(apply_receipts, con, ReceiptsFile, [_rcpt(11, "supply_deposit")])) == [
        "above_contract_quantity"
    ]


def test_cmi_bath_keeps_a_batch_on_one_line_of_a_contract() -> None:
    con = _store("CDS", cline("K1", 1), cline("K1", 2))
    ctx = make_ctx(cmi_mult=True, cmi_bath=True)
    result = apply(apply_receipts, con, ReceiptsFile, [
        _rcpt(5, "supply_deposit", 1, batch="B1"), _rcpt(5, "supply_deposit", 1, batch="B1"),
        _rcpt(5, "supply_deposit", 2, batch="B1"), _rcpt(5, "supply_deposit", 2, batch="B2"),
    ], ctx)  # fmt: skip
    assert rules(result) == ["batch_on_other_line"]
    assert result.rejects["line"].to_list() == [4]


def test_same_batch_on_two_lines_is_fine_without_cmi_bath() -> None:
    con = _store("CDS", cline("K1", 1), cline("K1", 2))
    result = apply(apply_receipts, con, ReceiptsFile, [
        _rcpt(5, "supply_deposit", 1, batch="B1"), _rcpt(5, "supply_deposit", 2, batch="B1"),
    ], make_ctx(cmi_mult=True))  # fmt: skip
    assert result.rows_applied == 2


def test_cmi_bath_sees_batches_of_earlier_files() -> None:
    con = _store("CDS", cline("K1", 1), cline("K1", 2))
    ctx = make_ctx(cmi_bath=True)
    apply(apply_receipts, con, ReceiptsFile, [_rcpt(5, "supply_deposit", 1, batch="B1")], ctx)
    assert rules(
        apply(apply_receipts, con, ReceiptsFile, [_rcpt(5, "supply_deposit", 2, batch="B1")], ctx)
    ) == ["batch_on_other_line"]


def test_ncc_quantity_is_never_available() -> None:
    con = _store("SCS", cline("K1", 1, contract_quantity="20", unit_factor="5"))
    result = apply(apply_receipts, con, ReceiptsFile, [_rcpt(20, "supply", ncc_quantity="3")])
    assert result.rows_applied == 1
    ln = line_state(con, "K1", 1)
    assert (ln["received"], ln["ncc"]) == (100, 15)
    from transforms.contract_reports import contract_balance_report

    bal = contract_balance_report(con, dt.date(2024, 3, 1)).row(0, named=True)
    assert bal["available"] == 85


def test_ncc_above_quantity_is_rejected() -> None:
    con = _store("SCS")
    assert rules(
        apply(apply_receipts, con, ReceiptsFile, [_rcpt(2, "supply", ncc_quantity="3")])
    ) == ["ncc_above_quantity"]


def test_closed_line_takes_no_reception() -> None:
    con = _store("CDS", cline("K1", 1, status="C"))
    assert rules(apply(apply_receipts, con, ReceiptsFile, [_rcpt(2, "supply_deposit")])) == [
        "line_closed"
    ]


def test_a_reception_beyond_the_stock_quantity_limit_is_rejected_the_others_applied() -> None:
    con = _store("CDS", cline("K1", 1), cline("K1", 2))
    result = apply(
        apply_receipts,
        con,
        ReceiptsFile,
        [_rcpt(5, "supply_deposit"), _rcpt(999999999999999999, "supply_deposit", line_no=2)],
    )
    assert rules(result) == ["quantity_too_large"] and result.rows_applied == 1
    assert line_state(con, "K1", 1)["received"] == 5
