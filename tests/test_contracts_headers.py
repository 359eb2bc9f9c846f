"""Contract headers and keys (SPEC §7.1, §7.3 log, §7.4 activation)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from test_contracts_support import (
    AS_OF,
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

from schemas.base import validate_rows
from schemas.contracts import (
    ContractKeysFile,
    ContractLinesFile,
    ContractsFile,
    ReceiptsFile,
)
from transforms.contracts import (
    apply_contract_keys,
    apply_contract_lines,
    apply_contracts,
    apply_receipts,
)


def test_created_contract_is_new_and_logged() -> None:
    con = make_store()
    result = apply(apply_contracts, con, ContractsFile, [header("K1", "CDS")])
    assert result.rows_applied == 1 and result.rejects.height == 0
    h = header_state(con, "K1")
    assert (h["status"], h["active"], h["off_contract_sales"], h["logistic"]) == (
        "N",
        False,
        False,
        False,
    )
    assert log_events(con) == [("K1", None, "Contract was created", None, None, None)]


@pytest.mark.parametrize(
    "column", ["description", "contract_type", "currency", "handler", "responsible", "warehouse"]
)
def test_upsert_needs_its_required_columns(column: str) -> None:
    con = make_store()
    row = header("K1", "WBS")
    del row[column]
    result = apply(apply_contracts, con, ContractsFile, [row])
    assert rules(result) == ["required"]
    assert result.rejects["column"][0] == column


@pytest.mark.parametrize("ctype", ["CDS", "WCS", "CBS", "DIS"])
def test_customer_is_required_for_cds_wcs_cbs_dis(ctype: str) -> None:
    row = header("K1", ctype)
    del row["customer"]
    result = apply(apply_contracts, make_store(), ContractsFile, [row])
    assert rules(result) == ["customer_required"]


@pytest.mark.parametrize("ctype", ["SCS", "WDS", "WBS"])
def test_customer_is_optional_for_scs_wds_wbs(ctype: str) -> None:
    result = apply(apply_contracts, make_store(), ContractsFile, [header("K1", ctype)])
    assert result.rows_applied == 1


@pytest.mark.parametrize("ctype", ["SCS", "WDS", "WBS", "DIS"])
def test_supplier_is_required_for_scs_wds_wbs_dis(ctype: str) -> None:
    row = header("K1", ctype)
    del row["supplier"]
    assert rules(apply(apply_contracts, make_store(), ContractsFile, [row])) == [
        "supplier_required"
    ]


def test_supplier_is_informational_for_cds() -> None:
    result = apply(
        apply_contracts, make_store(), ContractsFile, [header("K1", "CDS", supplier="S9")]
    )
    assert result.rows_applied == 1


def test_logistic_is_only_for_scs() -> None:
    con = make_store()
    result = apply(
        apply_contracts, con, ContractsFile,
        [header("K1", "WDS", logistic="Y"), header("K2", "SCS", logistic="Y"), header("K3", "CDS", logistic="N")],
    )  # fmt: skip
    assert rules(result) == ["logistic_only_scs"]
    assert header_state(con, "K2")["logistic"] is True


def test_logistic_scs_must_not_allow_off_contract_sales() -> None:
    result = apply(
        apply_contracts, make_store(), ContractsFile,
        [header("K1", "SCS", logistic="Y", off_contract_sales="YES")],
    )  # fmt: skip
    assert rules(result) == ["off_contract_logistic"]
    assert "logistic SCS" in result.rejects["message"][0]


def test_contract_key_must_exist_and_admits_its_customers() -> None:
    con = make_store()
    missing = apply(apply_contracts, con, ContractsFile, [header("K1", "SCS", contract_key="GRP")])
    assert rules(missing) == ["unknown_contract_key"]
    keys = apply(apply_contract_keys, con, ContractKeysFile, [
        {"contract_key": "GRP", "customer": "C1"}, {"contract_key": "GRP", "customer": "C2"},
        {"contract_key": "GRP", "customer": "C1"},
    ])  # fmt: skip
    assert keys.rows_applied == 3
    assert con.execute("SELECT count(*) FROM contract_keys").fetchall()[0][0] == 2
    ok = apply(apply_contracts, con, ContractsFile, [header("K1", "SCS", contract_key="GRP")])
    assert ok.rows_applied == 1 and header_state(con, "K1")["contract_key"] == "GRP"


def test_contract_key_only_where_customer_is_optional_and_blank() -> None:
    con = make_store()
    apply(apply_contract_keys, con, ContractKeysFile, [{"contract_key": "GRP", "customer": "C1"}])
    result = apply(apply_contracts, con, ContractsFile, [
        header("K1", "CDS", contract_key="GRP"),
        header("K2", "WBS", customer="C1", contract_key="GRP"),
    ])  # fmt: skip
    assert rules(result) == ["contract_key_not_allowed", "contract_key_not_allowed"]


def test_end_date_not_before_start_date() -> None:
    result = apply(apply_contracts, make_store(), ContractsFile, [
        header("K1", "WBS", start_date="2024-05-01", end_date="2024-04-30"),
    ])  # fmt: skip
    assert rules(result) == ["date_order"]


def test_currency_cannot_change_once_the_contract_has_lines() -> None:
    con = make_store()
    apply(apply_contracts, con, ContractsFile, [header("K1", "CDS"), header("K2", "CDS")])
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1)])
    result = apply(
        apply_contracts,
        con,
        ContractsFile,
        [header("K1", "CDS", currency="USD"), header("K2", "CDS", currency="USD")],
    )
    assert rules(result) == ["currency_frozen"]
    assert "stays EUR" in result.rejects["message"][0]
    assert header_state(con, "K2")["currency"] == "USD"


def test_contract_type_cannot_change_once_the_contract_has_lines() -> None:
    con = make_store()
    apply(apply_contracts, con, ContractsFile, [header("K1", "CDS")])
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1)])
    assert rules(apply(apply_contracts, con, ContractsFile, [header("K1", "WCS")])) == [
        "contract_type_frozen"
    ]


def test_header_dates_cannot_leave_a_line_outside() -> None:
    con = make_store()
    apply(apply_contracts, con, ContractsFile, [header("K1", "CDS")])
    apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1, start_date="2024-01-01", end_date="2024-12-31")],
    )
    result = apply(
        apply_contracts, con, ContractsFile, [header("K1", "CDS", end_date="2024-06-30")]
    )
    assert rules(result) == ["line_outside_header_dates"]
    ok = apply(apply_contracts, con, ContractsFile, [header("K1", "CDS", end_date="2025-06-30")])
    assert ok.rows_applied == 1


def test_change_is_logged_only_when_something_changes() -> None:
    con = make_store()
    apply(apply_contracts, con, ContractsFile, [header("K1", "CDS")])
    apply(apply_contracts, con, ContractsFile, [header("K1", "CDS")])
    apply(apply_contracts, con, ContractsFile, [header("K1", "CDS", description="renamed")])
    events = [e[2] for e in log_events(con)]
    assert events == ["Contract was created", "Contract was changed"]


@pytest.mark.parametrize("ctype", ["CBS", "WBS", "DIS"])
def test_activation_initializes_buffer_and_dis_lines(ctype: str) -> None:
    con = make_store()
    apply(apply_contracts, con, ContractsFile, [header("K1", ctype)])
    apply(
        apply_contract_lines,
        con,
        ContractLinesFile,
        [cline("K1", 1, contract_quantity="40", unit_factor="3")],
    )
    assert line_state(con, "K1", 1)["initialized"] is False
    apply(apply_contracts, con, ContractsFile, [header("K1", ctype, active="Y")])
    ln = line_state(con, "K1", 1)
    assert ln["initialized"] is True
    assert ln["reception_date"] == AS_OF.date()
    assert ln["received"] == 120  # stock units
    assert ln["status"] == "N"  # no order line yet
    assert ln["reserved_for"] == ("CUST1" if ctype == "CBS" else None)  # type-60 reservation
    h = header_state(con, "K1")
    assert h["active"] is True and h["activated_at"] == AS_OF
    assert [e[2] for e in log_events(con)][-1] == "Contract was activated"


def test_activation_does_not_initialize_received_types() -> None:
    con = make_store()
    apply(apply_contracts, con, ContractsFile, [header("K1", "CDS")])
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1, contract_quantity="40")])
    apply(apply_contracts, con, ContractsFile, [header("K1", "CDS", active="Y")])
    ln = line_state(con, "K1", 1)
    assert (ln["initialized"], ln["received"], ln["reception_date"]) == (False, 0, None)


def test_activation_is_not_undone() -> None:
    con = make_store()
    apply(apply_contracts, con, ContractsFile, [header("K1", "CDS", active="Y")])
    later = make_ctx(as_of=dt.datetime(2024, 3, 2))
    result = apply(apply_contracts, con, ContractsFile, [header("K1", "CDS", active="N")], later)
    assert result.rows_applied == 1 and result.warnings
    h = header_state(con, "K1")
    assert h["active"] is True and h["activated_at"] == AS_OF
    assert [e[2] for e in log_events(con)].count("Contract was activated") == 1


def test_delete_only_while_nothing_refers_to_the_contract() -> None:
    con = make_store()
    apply(
        apply_contracts, con, ContractsFile, [header("K1", "CDS", active="Y"), header("K2", "CDS")]
    )
    apply(apply_contract_lines, con, ContractLinesFile, [cline("K1", 1), cline("K2", 1)])
    apply(apply_receipts, con, ReceiptsFile, [
        {"contract_id": "K1", "line_no": "1", "quantity": "5", "receipt_date": "2024-02-01", "process": "supply_deposit"},
    ])  # fmt: skip
    result = apply(apply_contracts, con, ContractsFile, [
        {"action": "delete", "contract_id": "K1"}, {"action": "DELETE", "contract_id": "K2"},
        {"action": "delete", "contract_id": "K9"},
    ])  # fmt: skip
    assert rules(result) == ["contract_in_use", "unknown_contract"]
    assert "1 reception(s)" in result.rejects["message"][0]
    assert con.execute("SELECT contract_id FROM contracts").fetchall() == [("K1",)]
    assert (
        con.execute("SELECT count(*) FROM contract_lines WHERE contract_id = 'K2'").fetchall()[0][0]
        == 0
    )
    # its line went with it, and that is logged too (§7.3: every action on a line)
    assert [(e[1], e[2]) for e in log_events(con, "K2")[-2:]] == [
        (1, "Contract line was deleted"), (None, "Contract was deleted"),
    ]  # fmt: skip


def test_a_later_row_sees_an_earlier_row_of_the_same_file() -> None:
    con = make_store()
    result = apply(apply_contracts, con, ContractsFile, [
        header("K1", "CDS"), header("K1", "CDS", active="Y"), {"action": "delete", "contract_id": "K1"},
        header("K1", "WBS"),
    ])  # fmt: skip
    assert result.rows_applied == 4
    assert header_state(con, "K1")["contract_type"] == "WBS"
    assert [e[2] for e in log_events(con)] == [
        "Contract was created", "Contract was activated", "Contract was deleted", "Contract was created",
    ]  # fmt: skip


def test_contract_codes_are_any_text_without_control_characters() -> None:
    """§7 sets no format for ids, customers or warehouses: spaces, long order numbers and
    other characters are codes; a control character or more than 255 characters is not."""
    rows = pl.DataFrame({
        "_line": [2, 3, 4, 5],
        "contract_key": ["KEY 1", "K/ü-#2", "K3", "x" * 256],
        "customer": ["Hospital A", "C" * 255, "C\x0b", "C4"],
    })  # fmt: skip
    valid, rejects = validate_rows(ContractKeysFile, rows)
    assert valid["_line"].to_list() == [2, 3]
    assert sorted(zip(rejects["line"], rejects["column"], rejects["rule"], strict=True)) == [
        (4, "customer", "code"), (5, "contract_key", "code"),
    ]  # fmt: skip


def test_a_currency_must_be_an_iso_4217_code_in_any_case() -> None:
    """§7.1: three letters are not enough; `XYZ` is no currency (the list is pycountry's)."""
    rows = pl.DataFrame({
        "_line": [2, 3, 4, 5, 6], "contract_id": ["K1", "K2", "K3", "K4", "K5"],
        "currency": ["XYZ", "chf", "JPY", "EU", "ABC"],
    })  # fmt: skip
    valid, rejects = validate_rows(ContractsFile, rows)
    assert valid["_line"].to_list() == [3, 4]
    assert rejects.select("line", "rule", "value").rows() == [
        (2, "currency", "XYZ"),
        (5, "currency", "EU"),
        (6, "currency", "ABC"),
    ]
    assert "ISO 4217" in rejects["message"][0]


def test_bad_cells_are_rejected_by_the_file_contract() -> None:
    rows = pl.DataFrame({
        "_line": [2, 3, 4, 5], "contract_id": ["K1", "K\t2", "K3", "K4"],
        "contract_type": ["XYZ", "CDS", "cds", "WBS"], "active": ["maybe", "Y", "n", "1"],
        "currency": ["EUR", "EURO", "eur", "EUR"], "start_date": ["2024-02-30", None, None, None],
    })  # fmt: skip
    valid, rejects = validate_rows(ContractsFile, rows)
    assert valid["_line"].to_list() == [4, 5]
    got = set(zip(rejects["line"], rejects["rule"], strict=True))
    assert {(2, "contract_type"), (2, "boolean"), (2, "date"), (3, "code"), (3, "currency")} <= got
