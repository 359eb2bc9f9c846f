"""Serial-side state reports and invariants: serial_balance, exported_files (SPEC §5, §8, §10)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from helpers_serials import DEMO, PROD_A, PROD_B, make_ctx, rows, seed, set_status, valid_rows

from connectors.store import open_store
from schemas.master_data import CmosFile
from schemas.serials import AssignmentsFile, ExportsFile, PartnerRequestsFile
from transforms.codes import gs1_check_digit
from transforms.master_data import apply_cmos
from transforms.reports import (
    SERIAL_BALANCE_COLUMNS,
    exported_files_report,
    pool_sizes,
    serial_balance_report,
    serial_invariants,
)
from transforms.serials import (
    apply_assignments,
    apply_exports,
    apply_partner_requests,
    insert_serials,
)

CTX = make_ctx()


def _assign(con: duckdb.DuckDBPyConnection, cmo_id: str, product: str, n: int) -> None:
    frame = rows(cmo_id=cmo_id, product_code=product, quantity=str(n))
    result = apply_assignments(con, valid_rows(AssignmentsFile, frame), CTX)
    assert result.rejects.height == 0


def _export(
    con: duckdb.DuckDBPyConnection, cmo_id: str, n: int, allow: str = "N", **kw: Any
) -> None:
    frame = rows(cmo_id=cmo_id, product_code=DEMO, quantity=str(n), allow_already_exported=allow)
    result = apply_exports(con, valid_rows(ExportsFile, frame), kw.get("ctx", CTX))
    assert result.rejects.height == 0


def _balance(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dict[str, Any]]:
    report = serial_balance_report(con)
    assert report.columns == SERIAL_BALANCE_COLUMNS
    return {(r["cmo_id"], r["product_code"]): r for r in report.to_dicts()}


def _counts(row: dict[str, Any]) -> tuple[int, ...]:
    return tuple(row[c] for c in SERIAL_BALANCE_COLUMNS[4:])


def test_every_produceable_product_of_a_cmo_has_a_row_even_without_serials() -> None:
    con = seed(products=[DEMO, PROD_A, PROD_B], cmos={"C1": [DEMO, PROD_A], "C2": []},
               names={"C1": "Acme"})  # fmt: skip
    balance = _balance(con)
    assert list(balance) == [("C1", PROD_A), ("C1", DEMO)]  # by cmo_id, product_code
    row = balance[("C1", DEMO)]
    assert row["cmo_name"] == "Acme" and row["product_name"] == f"Product {DEMO}"
    assert _counts(row) == (0, 0, 0, 0, 0, 0, 0, 0)


def test_a_cmo_holding_serials_of_a_product_it_no_longer_produces_keeps_its_row() -> None:
    con = seed(products=[DEMO, PROD_A], cmos={"C1": [DEMO, PROD_A]}, pool={PROD_A: 3})
    _assign(con, "C1", PROD_A, 2)
    con.execute("DELETE FROM cmo_products WHERE product_code = ?", [PROD_A])
    balance = _balance(con)
    assert list(balance) == [("C1", PROD_A), ("C1", DEMO)]  # by cmo_id, product_code
    assert balance[("C1", PROD_A)]["assigned"] == 2
    assert balance[("C1", PROD_A)]["available"] == 1


def test_a_deleted_cmo_without_serials_that_left_the_pool_is_absent_from_the_balance() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO], "C2": [DEMO]}, pool={DEMO: 3})
    _assign(con, "C2", DEMO, 2)
    _delete_cmo(con, "C2")  # its assigned-not-exported serials go back to the pool
    assert list(_balance(con)) == [("C1", DEMO)]
    assert _balance(con)[("C1", DEMO)]["available"] == 3


def _delete_cmo(con: duckdb.DuckDBPyConnection, cmo_id: str) -> None:
    result = apply_cmos(con, valid_rows(CmosFile, rows(action="delete", cmo_id=cmo_id)), CTX)
    assert result.rejects.height == 0


def test_a_deleted_cmo_keeps_the_rows_of_products_whose_serials_left_the_pool() -> None:
    """§4.2: nothing handed out disappears from the balance; the other rows go."""
    con = seed(products=[DEMO, PROD_A, PROD_B], cmos={"C1": [DEMO], "C2": [DEMO, PROD_A, PROD_B]},
               partners=["C2"], pool={DEMO: 10, PROD_A: 4, PROD_B: 4})  # fmt: skip
    _assign(con, "C2", DEMO, 5)
    _export(con, "C2", 2)  # two of DEMO exported
    _assign(con, "C2", PROD_A, 3)  # PROD_A: only assigned, never handed out
    _assign(con, "C2", PROD_B, 3)
    req = rows(request_id="R1", cmo_id="C2", product_code=PROD_B, quantity="1")
    assert apply_partner_requests(con, valid_rows(PartnerRequestsFile, req), CTX).rejects.is_empty()
    _delete_cmo(con, "C2")
    balance = _balance(con)
    assert list(balance) == [("C1", DEMO), ("C2", PROD_B), ("C2", DEMO)]
    # available, assigned, assigned_not_exported, exported, requested, commissioned, shipped,
    # decommissioned
    assert _counts(balance[("C2", DEMO)]) == (8, 2, 0, 2, 0, 0, 0, 0)
    assert _counts(balance[("C2", PROD_B)]) == (3, 0, 0, 0, 1, 0, 0, 0)
    invariants = serial_invariants(con, serial_balance_report(con))
    assert invariants["reported_counts_equal_state"] is True


def test_a_deleted_cmo_keeps_the_row_of_a_product_whose_serial_was_decommissioned() -> None:
    con = seed(products=[DEMO], cmos={"C2": [DEMO]}, pool={DEMO: 4})
    _assign(con, "C2", DEMO, 3)
    set_status(con, "serial = 'S00002'", decommissioned=True)
    _delete_cmo(con, "C2")
    # its assigned-not-exported serials went back to the pool, the decommissioned one did not
    assert _counts(_balance(con)[("C2", DEMO)]) == (3, 1, 0, 0, 0, 0, 0, 1)
    assert serial_invariants(con, serial_balance_report(con))["reported_counts_equal_state"]


def test_the_counts_follow_the_definitions_of_section_5() -> None:
    con = seed(products=[DEMO, PROD_A], cmos={"C1": [DEMO], "C2": [DEMO, PROD_A]},
               partners=["C1"], pool={DEMO: 20, PROD_A: 4})  # fmt: skip
    _assign(con, "C1", DEMO, 10)  # S1-S10
    _assign(con, "C2", DEMO, 3)  # S11-S13
    _export(con, "C1", 3)  # S1-S3 exported
    req = rows(request_id="R1", cmo_id="C1", product_code=DEMO, quantity="2")  # S4, S5
    apply_partner_requests(con, valid_rows(PartnerRequestsFile, req), CTX)
    set_status(con, "serial IN ('S00001', 'S00006')", commissioned=True)
    set_status(con, "serial = 'S00004'", commissioned=True, shipped=True)
    set_status(con, "serial IN ('S00002', 'S00007')", decommissioned=True)
    balance = _balance(con)
    # available, assigned, assigned_not_exported, exported, requested, commissioned, shipped,
    # decommissioned
    assert _counts(balance[("C1", DEMO)]) == (7, 8, 3, 3, 2, 3, 1, 2)
    assert _counts(balance[("C2", DEMO)]) == (7, 3, 3, 0, 0, 0, 0, 0)
    assert _counts(balance[("C2", PROD_A)]) == (4, 0, 0, 0, 0, 0, 0, 0)
    assert serial_invariants(con, serial_balance_report(con))["reported_counts_equal_state"]


def test_a_re_export_counts_a_serial_as_exported_once() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, pool={DEMO: 2})
    _assign(con, "C1", DEMO, 2)
    _export(con, "C1", 2)
    _export(con, "C1", 2, allow="Y")
    row = _balance(con)[("C1", DEMO)]
    assert (row["assigned"], row["assigned_not_exported"], row["exported"]) == (2, 0, 2)


def test_invariants_hold_for_a_consistent_state() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO], "C2": [DEMO]}, partners=["C1"], pool={DEMO: 9})
    _assign(con, "C1", DEMO, 5)
    _assign(con, "C2", DEMO, 2)
    _export(con, "C1", 2)
    _export(con, "C2", 1)
    _delete_cmo(con, "C2")
    invariants = serial_invariants(con, serial_balance_report(con))
    assert invariants == {
        "serial_unique_per_product": True,
        "assigned_serials_belong_to_a_cmo": True,
        "reported_counts_equal_state": True,
    }


def test_invariants_detect_a_duplicate_serial() -> None:
    con = seed(products=[DEMO], pool={DEMO: ["A1"]})
    seed(con, pool={DEMO: ["A1"]})
    invariants = serial_invariants(con, serial_balance_report(con))
    assert invariants["serial_unique_per_product"] is False


def test_invariants_detect_a_serial_assigned_to_no_known_cmo() -> None:
    con = seed(products=[DEMO], pool={DEMO: 2})
    set_status(con, "serial = 'S00001'", cmo_id="GHOST", assign_seq=1)
    invariants = serial_invariants(con, serial_balance_report(con))
    assert invariants["assigned_serials_belong_to_a_cmo"] is False


def test_invariants_detect_reported_counts_that_differ_from_the_state() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, pool={DEMO: 3})
    _assign(con, "C1", DEMO, 2)
    stale = serial_balance_report(con)
    _assign(con, "C1", DEMO, 1)
    assert serial_invariants(con, stale)["reported_counts_equal_state"] is False
    assert serial_invariants(con, serial_balance_report(con))["reported_counts_equal_state"]


def test_exported_files_are_listed_newest_first() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, names={"C1": "Acme"}, pool={DEMO: 3})
    _assign(con, "C1", DEMO, 3)
    _export(con, "C1", 1, ctx=make_ctx(as_of=dt.datetime(2024, 5, 1, 8, 0, 0)))
    _export(con, "C1", 1, ctx=make_ctx(as_of=dt.datetime(2024, 5, 3, 8, 0, 0)))
    _export(con, "C1", 2, allow="Y", ctx=make_ctx(as_of=dt.datetime(2024, 5, 2, 8, 0, 0)))
    report = exported_files_report(con)
    assert report.columns == [
        "cmo_id", "file_name", "product_code", "count", "created", "can_contain_duplicates",
    ]  # fmt: skip
    assert report.rows() == [
        ("C1", f"{DEMO}_Acme_1_20240503080000.csv", DEMO, 1, "2024-05-03T08:00:00", "N"),
        ("C1", f"{DEMO}_Acme_2_20240502080000_CanContainDuplicateSerials.csv", DEMO, 2,
         "2024-05-02T08:00:00", "Y"),
        ("C1", f"{DEMO}_Acme_1_20240501080000.csv", DEMO, 1, "2024-05-01T08:00:00", "N"),
    ]  # fmt: skip


def test_partner_answers_are_not_exported_files() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, partners=["C1"], pool={DEMO: 2})
    _assign(con, "C1", DEMO, 2)
    req = rows(request_id="R1", cmo_id="C1", product_code=DEMO, quantity="1")
    apply_partner_requests(con, valid_rows(PartnerRequestsFile, req), CTX)
    assert exported_files_report(con).height == 0


def test_incremental_uniqueness_check_catches_a_new_serial_that_repeats_an_old_one() -> None:
    con = seed(products=["P"], pool={"P": ["A", "B"]})
    balance = serial_balance_report(con)
    before = pool_sizes(con)
    assert serial_invariants(con, balance, before)["serial_unique_per_product"] is True
    # a repeat slipped into the pool behind the rules' back (its run made consistent)
    insert_serials(con, pl.DataFrame({"product_code": ["P"], "serial": ["A"]}), "pool", CTX)
    assert serial_invariants(con, balance, before)["serial_unique_per_product"] is False
    # products that did not grow since are not checked again: serials never change
    assert serial_invariants(con, balance, pool_sizes(con))["serial_unique_per_product"] is True


def test_incremental_uniqueness_check_catches_two_new_serials_that_repeat_each_other() -> None:
    con = seed(products=["P", "Q"], pool={"P": ["A", "B"], "Q": ["A"]})
    balance = serial_balance_report(con)
    before = pool_sizes(con)
    # two arrivals of one night repeat each other (none repeats an older serial); the
    # same serial in another product is no repeat
    insert_serials(
        con, pl.DataFrame({"product_code": ["P", "P"], "serial": ["C", "C"]}), "pool", CTX
    )
    assert serial_invariants(con, balance, before)["serial_unique_per_product"] is False
    con2 = seed(products=["P", "Q"], pool={"P": ["A", "B"], "Q": ["A"]})
    before = pool_sizes(con2)
    insert_serials(
        con2, pl.DataFrame({"product_code": ["P", "Q"], "serial": ["C", "C"]}), "pool", CTX
    )
    assert serial_invariants(con2, balance, before)["serial_unique_per_product"] is True


def test_uniqueness_check_compares_the_strings_of_serials_whose_keys_collide() -> None:
    """The night's serials are told apart by a 64-bit key first; two different serials
    with one key (a collision, forced here by a constant key) are no repeat, and two
    equal ones still are."""
    from transforms.reports import _new_serials_unique

    con = seed(products=["P", "Q"], pool={"P": ["A"], "Q": ["A"]})
    before = pool_sizes(con)
    insert_serials(
        con, pl.DataFrame({"product_code": ["P", "P", "Q"], "serial": ["B", "C", "B"]}), "pool", CTX
    )
    assert _new_serials_unique(con, before, key="0::UBIGINT") is True
    assert _new_serials_unique(con, {}, key="0::UBIGINT") is True
    insert_serials(con, pl.DataFrame({"product_code": ["P"], "serial": ["C"]}), "pool", CTX)
    assert _new_serials_unique(con, before, key="0::UBIGINT") is False
    assert _new_serials_unique(con, before) is False


def test_uniqueness_check_of_a_night_that_grew_hundreds_of_products(tmp_path: Path) -> None:
    """A pool file of 300 products: the check covers every product that grew (a repeat in
    the last one is found) and runs in bounded memory — the check goes a few products at a time (test_pipeline's night of 300 products)."""
    N = 300
    codes = [(b := f"09{i:011d}") + gs1_check_digit(b) for i in range(N)]
    path = tmp_path / "cmi.duckdb"
    store = open_store(path)
    seed(store.con, products=codes, pool={code: [str(n) for n in range(20)] for code in codes})
    store.close()
    store = open_store(path)  # a store file as a night opens it: its blocks on disk
    con = store.con
    balance = serial_balance_report(con)
    before = pool_sizes(con)
    grown = pl.DataFrame({"product_code": codes * 2, "serial": ["20"] * N + ["B"] * N})
    insert_serials(con, grown, "pool", CTX)
    assert serial_invariants(con, balance, before)["serial_unique_per_product"] is True
    repeat = pl.DataFrame({"product_code": [codes[-1]], "serial": ["1"]})
    insert_serials(con, repeat, "pool", CTX)  # behind the rules' back
    assert serial_invariants(con, balance, before)["serial_unique_per_product"] is False
    store.close()


def test_invariants_detect_runs_that_do_not_cover_the_pool() -> None:
    con = seed(products=["P"], pool={"P": 3})
    balance = serial_balance_report(con)
    assert serial_invariants(con, balance)["serial_unique_per_product"] is True
    con.execute("UPDATE serial_runs SET hi = hi - 1")  # the last serial lost its status
    assert serial_invariants(con, balance)["serial_unique_per_product"] is False


def test_pool_rows_left_by_a_torn_commit_are_discarded_and_the_rest_kept() -> None:
    """A run killed while DuckDB committed a pool load came back with the load's pool rows
    but not its sizes, runs or processed mark: those rows, and only those, are removed."""
    from connectors.store import discard_torn_pool_rows

    con = seed(products=["P", "Q"], pool={"P": ["A", "B"]})
    assert discard_torn_pool_rows(con) == 0  # a consistent state is left alone
    pid = con.execute("SELECT pid FROM serial_products WHERE product_code = 'P'").fetchone()
    assert pid is not None
    con.execute(  # the torn load: P's next numbers, and a product that never got a size
        "INSERT INTO pool VALUES (?, 2, NULL, 'C'), (?, 3, NULL, 'D'), (99, 0, NULL, 'X')",
        [pid[0], pid[0]],
    )
    assert discard_torn_pool_rows(con) == 3
    assert con.execute("SELECT txt FROM pool ORDER BY pseq").fetchall() == [("A",), ("B",)]
    balance = serial_balance_report(con)
    assert all(serial_invariants(con, balance).values())
