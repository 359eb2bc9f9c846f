"""Master data: products, CMOs, partnerships (SPEC §4)."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest
from helpers_serials import (
    DEMO,
    PROD_A,
    PROD_B,
    count,
    make_ctx,
    rows,
    seed,
    set_status,
    valid_rows,
)

from connectors.store import memory_connection
from schemas.master_data import CmosFile, PartnershipsFile, ProductsFile
from schemas.serials import AssignmentsFile
from transforms.context import FileResult
from transforms.master_data import apply_cmos, apply_partnerships, apply_products
from transforms.reports import cmos_report
from transforms.serials import apply_assignments

CTX = make_ctx()


def _products(con: duckdb.DuckDBPyConnection, **columns: Any) -> FileResult:
    return apply_products(con, valid_rows(ProductsFile, rows(**columns)), CTX)


def _cmos(con: duckdb.DuckDBPyConnection, **columns: Any) -> FileResult:
    base = {"cmo_name": "Acme", "city": "Basel", "country": "CH"}
    if columns.get("action") != "delete":
        base.update(columns)
        columns = base
    return apply_cmos(con, valid_rows(CmosFile, rows(**columns)), CTX)


def _partnerships(con: duckdb.DuckDBPyConnection, **columns: Any) -> FileResult:
    return apply_partnerships(con, valid_rows(PartnershipsFile, rows(**columns)), CTX)


def _cmo(con: duckdb.DuckDBPyConnection, cmo_id: str) -> dict[str, Any]:
    report = cmos_report(con).filter(cmo_id=cmo_id)
    assert report.height == 1
    return report.row(0, named=True)


def _status(con: duckdb.DuckDBPyConnection, cmo_id: str) -> str:
    return str(_cmo(con, cmo_id)["partnership_status"])


# --------------------------------------------------------------------------- products §4.1


def test_products_are_inserted_with_stock_unit_ea_by_default() -> None:
    con = memory_connection()
    result = _products(con, product_code=[DEMO, PROD_A], product_name=["Demo", "A"],
                       stock_unit=[None, "BOX"])  # fmt: skip
    assert result.rows_applied == 2 and result.rejects.height == 0
    assert con.execute("SELECT * FROM products ORDER BY product_code").fetchall() == [
        (PROD_A, "A", "BOX"),
        (DEMO, "Demo", "EA"),
    ]


def test_products_are_upserted_by_product_code_and_the_last_row_wins() -> None:
    con = memory_connection()
    _products(con, product_code=DEMO, product_name="Old name", stock_unit="BOX")
    _products(con, product_code=[DEMO, DEMO], product_name=["New", "Newest"])
    assert con.execute("SELECT * FROM products").fetchall() == [(DEMO, "Newest", "EA")]


# --------------------------------------------------------------------------- CMOs §4.2


def test_a_cmo_is_created_with_its_master_data_and_produceable_products() -> None:
    con = seed(products=[DEMO, PROD_A])
    result = _cmos(
        con, cmo_id="C1", cmo_name="Acme Pharma", street1="Main 1", street2="Hall 2",
        street3="Gate 3", city="Basel", state="BS", zip_code="4000", country="ch",
        produceable_products=f"{DEMO}; {PROD_A}", collaboration_channel="TL-1",
        sgln="1234567.00012.0",
    )  # fmt: skip
    assert result.rejects.height == 0 and result.rows_applied == 1
    cmo = _cmo(con, "C1")
    assert cmo == {
        "cmo_id": "C1", "cmo_name": "Acme Pharma", "street1": "Main 1", "street2": "Hall 2",
        "street3": "Gate 3", "city": "Basel", "state": "BS", "zip_code": "4000", "country": "CH",
        "produceable_products": f"{DEMO};{PROD_A}", "collaboration_channel": "TL-1",
        "sgln": "1234567.00012.0", "partnership_status": "none", "contact_email": None,
        "tenant": None, "payment_model": None, "deleted": "N",
    }  # fmt: skip


def test_an_upsert_replaces_the_master_data_of_the_cmo() -> None:
    con = seed(products=[DEMO, PROD_A])
    _cmos(con, cmo_id="C1", cmo_name="Acme", street1="Old street", produceable_products=DEMO)
    _cmos(con, cmo_id="C1", cmo_name="Acme Two", city="Bern", produceable_products=PROD_A)
    cmo = _cmo(con, "C1")
    assert cmo["cmo_name"] == "Acme Two" and cmo["city"] == "Bern"
    assert cmo["street1"] is None  # replaced, not merged
    assert cmo["produceable_products"] == PROD_A


def test_several_cmos_may_share_a_name_and_a_product() -> None:
    con = seed(products=[DEMO])
    result = _cmos(con, cmo_id=["C1", "C2"], cmo_name="Same", produceable_products=DEMO)
    assert result.rows_applied == 2
    assert con.execute("SELECT count(*) FROM cmo_products WHERE product_code = ?", [DEMO]
                       ).fetchone() == (2,)  # fmt: skip


@pytest.mark.parametrize("column", ["cmo_name", "city", "country"])
def test_an_upsert_requires_name_city_and_country(column: str) -> None:
    con = memory_connection()
    result = _cmos(con, cmo_id="C1", **{column: None})
    (reject,) = result.rejects.to_dicts()
    assert reject["line"] == 2 and reject["column"] == column and reject["rule"] == "required"
    assert con.execute("SELECT count(*) FROM cmos").fetchone() == (0,)


def test_sgln_is_required_when_a_collaboration_channel_is_set() -> None:
    con = memory_connection()
    result = _cmos(con, cmo_id=["C1", "C2"], collaboration_channel=["TL-1", None])
    (reject,) = result.rejects.to_dicts()
    assert reject["line"] == 2 and reject["column"] == "sgln" and reject["rule"] == "required"
    assert "collaboration_channel" in reject["message"]
    assert [r[0] for r in con.execute("SELECT cmo_id FROM cmos").fetchall()] == ["C2"]


def test_produceable_products_must_exist() -> None:
    con = seed(products=[DEMO])
    result = _cmos(con, cmo_id="C1", produceable_products=f"{DEMO};{PROD_A}")
    (reject,) = result.rejects.to_dicts()
    assert reject["column"] == "produceable_products" and reject["value"] == PROD_A
    assert reject["rule"] == "unknown_product"
    assert con.execute("SELECT count(*) FROM cmos").fetchone() == (0,)


def test_a_produceable_product_in_scientific_notation_gets_the_text_hint() -> None:
    con = seed(products=[DEMO])
    (reject,) = _cmos(con, cmo_id="C1", produceable_products="1.12233E+13").rejects.to_dicts()
    assert reject["column"] == "produceable_products" and "as text" in reject["message"]
    assert "scientific notation" in reject["message"]
    (lost,) = _cmos(con, cmo_id="C2", produceable_products=PROD_A[1:]).rejects.to_dicts()
    assert "dropped the leading zero" in lost["message"]  # PROD_A starts with 0


def test_dropping_a_produceable_product_keeps_its_assigned_serials_but_stops_new_ones() -> None:
    con = seed(products=[DEMO, PROD_A], cmos={"C1": [DEMO, PROD_A]}, pool={DEMO: 5})
    apply_assignments(
        con, valid_rows(AssignmentsFile, rows(cmo_id="C1", product_code=DEMO, quantity="2")), CTX
    )
    result = _cmos(con, cmo_id="C1", produceable_products=PROD_A)
    assert result.rejects.height == 0
    assert count(con, "cmo_id = 'C1'") == 2
    again = apply_assignments(
        con, valid_rows(AssignmentsFile, rows(cmo_id="C1", product_code=DEMO, quantity="1")), CTX
    )
    assert again.rejects.get_column("rule").to_list() == ["not_produceable"]


def test_delete_is_a_soft_delete_that_cmos_report_keeps() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]})
    result = _cmos(con, action="delete", cmo_id="C1")
    assert result.rows_applied == 1 and result.rejects.height == 0
    cmo = _cmo(con, "C1")
    assert cmo["deleted"] == "Y" and cmo["cmo_name"] == "CMO C1"


def test_deleting_a_cmo_returns_its_never_exported_serials_and_keeps_the_exported_ones() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, pool={DEMO: 6})
    apply_assignments(
        con, valid_rows(AssignmentsFile, rows(cmo_id="C1", product_code=DEMO, quantity="5")), CTX
    )
    set_status(con, "serial IN ('S00001', 'S00002')", export_count=1)
    set_status(con, "serial = 'S00003'", request_id="R1")
    _cmos(con, action="delete", cmo_id="C1")
    held = con.execute("SELECT serial FROM serials WHERE cmo_id = 'C1' ORDER BY sid").fetchall()
    assert held == [("S00001",), ("S00002",), ("S00003",)]
    pool = con.execute("SELECT serial FROM serials WHERE cmo_id IS NULL ORDER BY sid").fetchall()
    assert pool == [("S00004",), ("S00005",), ("S00006",)]
    assert count(con, "cmo_id IS NULL AND assign_seq IS NOT NULL") == 0


def test_a_deleted_cmo_can_no_longer_receive_assignments() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, pool={DEMO: 3})
    _cmos(con, action="delete", cmo_id="C1")
    result = apply_assignments(
        con, valid_rows(AssignmentsFile, rows(cmo_id="C1", product_code=DEMO, quantity="1")), CTX
    )
    assert result.rejects.get_column("rule").to_list() == ["cmo_deleted"]


def test_deleting_an_unknown_or_deleted_cmo_is_a_rejected_row() -> None:
    con = seed(cmos={"C1": []})
    result = _cmos(con, action=["delete", "delete", "DELETE"], cmo_id=["C9", "C1", "C1"])
    assert [(r["line"], r["rule"]) for r in result.rejects.to_dicts()] == [
        (2, "unknown_cmo"),
        (4, "cmo_deleted"),
    ]
    assert result.rows_applied == 1


def test_cmo_rows_are_applied_in_file_order_and_bad_rows_do_not_stop_good_ones() -> None:
    con = seed(products=[DEMO])
    result = _cmos(
        con, cmo_id=["C1", "C2", "C1"], cmo_name=["First", "Bad", "Second"],
        produceable_products=[None, "00000000000017", DEMO],
    )  # fmt: skip
    assert [r["line"] for r in result.rejects.to_dicts()] == [3]
    assert result.rows_applied == 2
    assert _cmo(con, "C1")["cmo_name"] == "Second"


# --------------------------------------------------------------------------- partnerships §4.3


def _invite(con: duckdb.DuckDBPyConnection, cmo_id: str = "C1") -> FileResult:
    return _partnerships(con, cmo_id=cmo_id, event="invite", contact_email="ops@cmo.example")


def _accept(con: duckdb.DuckDBPyConnection, cmo_id: str = "C1") -> FileResult:
    return _partnerships(
        con, cmo_id=cmo_id, event="accept", tenant="Partner CMO", payment_model="partner"
    )


def test_invite_makes_the_partnership_pending_with_the_contact_email() -> None:
    con = seed(cmos={"C1": []})
    assert _invite(con).rows_applied == 1
    cmo = _cmo(con, "C1")
    assert cmo["partnership_status"] == "pending"
    assert cmo["contact_email"] == "ops@cmo.example"


def test_accept_makes_a_pending_partnership_active_with_tenant_and_payment_model() -> None:
    con = seed(cmos={"C1": []})
    _invite(con)
    assert _partnerships(
        con, cmo_id="C1", event="Accept", tenant="Partner CMO", payment_model="Customer"
    ).rows_applied == 1  # fmt: skip
    cmo = _cmo(con, "C1")
    assert (cmo["partnership_status"], cmo["tenant"], cmo["payment_model"]) == (
        "active", "Partner CMO", "customer",
    )  # fmt: skip


def test_cancel_ends_a_pending_partnership() -> None:
    con = seed(cmos={"C1": []})
    _invite(con)
    assert _partnerships(con, cmo_id="C1", event="cancel").rows_applied == 1
    assert _status(con, "C1") == "none"
    assert _cmo(con, "C1")["contact_email"] is None


def test_remove_ends_an_active_partnership_and_a_new_invite_is_possible() -> None:
    con = seed(cmos={"C1": []})
    _invite(con)
    _accept(con)
    assert _partnerships(con, cmo_id="C1", event="remove").rows_applied == 1
    assert _status(con, "C1") == "none"
    assert _cmo(con, "C1")["tenant"] is None
    assert _invite(con).rows_applied == 1
    assert _status(con, "C1") == "pending"


def test_events_of_one_file_build_on_each_other_in_file_order() -> None:
    con = seed(cmos={"C1": []})
    result = _partnerships(
        con, cmo_id="C1", event=["invite", "accept"],
        contact_email=["ops@cmo.example", None], tenant=[None, "T"],
        payment_model=[None, "partner"],
    )  # fmt: skip
    assert result.rows_applied == 2 and result.rejects.height == 0
    assert _status(con, "C1") == "active"


@pytest.mark.parametrize(
    ("setup", "event", "status"),
    [
        ([], "accept", "none"),
        ([], "cancel", "none"),
        ([], "remove", "none"),
        (["invite"], "invite", "pending"),
        (["invite"], "remove", "pending"),
        (["invite", "accept"], "invite", "active"),
        (["invite", "accept"], "accept", "active"),
        (["invite", "accept"], "cancel", "active"),
    ],
)
def test_any_other_transition_is_rejected_naming_the_current_status(
    setup: list[str], event: str, status: str
) -> None:
    con = seed(cmos={"C1": []})
    for done in setup:
        (_invite if done == "invite" else _accept)(con)
    result = _partnerships(
        con, cmo_id="C1", event=event, contact_email="a@b.example", tenant="T",
        payment_model="partner",
    )  # fmt: skip
    (reject,) = result.rejects.to_dicts()
    assert reject["rule"] == "transition" and reject["column"] == "event"
    assert f"'{status}'" in reject["message"]
    assert _status(con, "C1") == status


@pytest.mark.parametrize(
    ("event", "missing"),
    [("invite", ["contact_email"]), ("accept", ["tenant", "payment_model"])],
)
def test_invite_needs_an_email_and_accept_a_tenant_and_payment_model(
    event: str, missing: list[str]
) -> None:
    con = seed(cmos={"C1": []})
    if event == "accept":
        _invite(con)
    before = _status(con, "C1")
    result = _partnerships(con, cmo_id="C1", event=event)
    assert [r["column"] for r in result.rejects.to_dicts()] == missing
    assert _status(con, "C1") == before


def test_a_partnership_needs_an_existing_cmo_that_is_not_deleted() -> None:
    con = seed(cmos={"C1": []})
    _cmos(con, action="delete", cmo_id="C1")
    result = _partnerships(
        con, cmo_id=["C1", "C9"], event="invite", contact_email="ops@cmo.example"
    )
    assert [(r["line"], r["rule"]) for r in result.rejects.to_dicts()] == [
        (2, "unknown_cmo"),
        (3, "unknown_cmo"),
    ]
    assert "deleted" in result.rejects.get_column("message")[0]


def test_an_upsert_keeps_the_partnership() -> None:
    con = seed(cmos={"C1": []})
    _invite(con)
    _accept(con)
    _cmos(con, cmo_id="C1", cmo_name="Renamed")
    cmo = _cmo(con, "C1")
    assert cmo["partnership_status"] == "active" and cmo["tenant"] == "Partner CMO"
    assert cmo["cmo_name"] == "Renamed"


def test_cmos_report_uses_y_n_for_deleted_and_orders_by_cmo_id() -> None:
    con = seed(cmos={"C2": [], "C1": []})
    _cmos(con, action="delete", cmo_id="C2")
    report = cmos_report(con)
    assert report.get_column("cmo_id").to_list() == ["C1", "C2"]
    assert report.get_column("deleted").to_list() == ["N", "Y"]


def test_products_helper_codes_are_valid() -> None:
    # the helper GTINs used throughout these tests are real GTIN-14s
    from transforms.codes import is_gtin14

    assert all(is_gtin14(c) for c in (DEMO, PROD_A, PROD_B))


def test_a_deleted_cmo_cannot_be_changed_or_re_created() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]})
    _cmos(con, action="delete", cmo_id="C1")
    result = _cmos(con, cmo_id="C1", cmo_name="Acme again")
    assert [(r["line"], r["rule"]) for r in result.rejects.to_dicts()] == [(2, "cmo_deleted")]
    assert "new cmo_id" in result.rejects.get_column("message")[0]
    assert _cmo(con, "C1")["deleted"] == "Y"
