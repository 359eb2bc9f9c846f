"""Serial rules: pool, generation, assignment, exports, partner requests, returns (SPEC §5)."""

from __future__ import annotations

import datetime as dt
import inspect
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from helpers_serials import (
    AS_OF,
    DEMO,
    PROD_A,
    PROD_B,
    count,
    make_ctx,
    register_outbox_items,
    rows,
    seed,
    set_status,
    valid_rows,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.ddl import SERIAL_DDL
from connectors.store import memory_connection, open_store
from schemas.serials import (
    AssignmentsFile,
    ExportsFile,
    PartnerRequestsFile,
    SerialGenerateFile,
    SerialPoolFile,
    SerialReturnsFile,
)
from transforms.codes import gs1_check_digit
from transforms.context import FileResult, RunContext, SerialsConfig
from transforms.reports import serial_balance_report, serial_invariants
from transforms.serials import (
    apply_assignments,
    apply_exports,
    apply_partner_requests,
    apply_serial_generate,
    apply_serial_pool,
    apply_serial_returns,
    export_file_name,
    load_runs,
    outbox_contents,
    pool_serials,
    random_serials,
    safe_cmo_name,
)

CTX = make_ctx()
Rule = Callable[[duckdb.DuckDBPyConnection, pl.DataFrame, RunContext], FileResult]


def _apply(
    rule: Rule, model: Any, con: duckdb.DuckDBPyConnection, ctx: RunContext = CTX, **cols: Any
) -> FileResult:
    return rule(con, valid_rows(model, rows(**cols)), ctx)


def pool(con: duckdb.DuckDBPyConnection, **cols: Any) -> FileResult:
    return _apply(apply_serial_pool, SerialPoolFile, con, **cols)


def generate(
    con: duckdb.DuckDBPyConnection, serials: SerialsConfig | None = None, **cols: Any
) -> FileResult:
    return _apply(apply_serial_generate, SerialGenerateFile, con, make_ctx(serials=serials), **cols)


def assign(con: duckdb.DuckDBPyConnection, **cols: Any) -> FileResult:
    return _apply(apply_assignments, AssignmentsFile, con, **cols)


def export(con: duckdb.DuckDBPyConnection, ctx: RunContext = CTX, **cols: Any) -> FileResult:
    return _apply(apply_exports, ExportsFile, con, ctx, **cols)


def request(con: duckdb.DuckDBPyConnection, ctx: RunContext = CTX, **cols: Any) -> FileResult:
    return _apply(apply_partner_requests, PartnerRequestsFile, con, ctx, **cols)


def give_back(con: duckdb.DuckDBPyConnection, **cols: Any) -> FileResult:
    return _apply(apply_serial_returns, SerialReturnsFile, con, **cols)


def _rules(result: FileResult) -> list[tuple[int, str]]:
    return [(r["line"], r["rule"]) for r in result.rejects.to_dicts()]


def _held(con: duckdb.DuckDBPyConnection, cmo_id: str, order: str = "assign_seq") -> list[str]:
    return [
        r[0]
        for r in con.execute(
            f"SELECT serial FROM serials WHERE cmo_id = ? ORDER BY {order}", [cmo_id]
        ).fetchall()
    ]


def _available(con: duckdb.DuckDBPyConnection, product: str = DEMO) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT serial FROM serials WHERE cmo_id IS NULL AND product_code = ? ORDER BY sid",
            [product],
        ).fetchall()
    ]


def _files(con: duckdb.DuckDBPyConnection, kind: str = "export") -> list[dict[str, Any]]:
    return (
        con.execute("SELECT * FROM outbox_files WHERE kind = ? ORDER BY file_id", [kind])
        .pl()
        .to_dicts()
    )


def _items(con: duckdb.DuckDBPyConnection, file_id: int) -> list[str]:
    return outbox_contents(con, [file_id])[file_id].get_column("serial").to_list()


def _counts(con: duckdb.DuckDBPyConnection, cmo_id: str, product: str = DEMO) -> dict[str, int]:
    row = con.execute(
        """SELECT count(*) FILTER (WHERE cmo_id IS NULL),
                  count(*) FILTER (WHERE cmo_id = ? AND request_id IS NULL),
                  count(*) FILTER (WHERE cmo_id = ? AND request_id IS NULL AND export_count = 0
                                   AND NOT commissioned AND NOT shipped AND NOT decommissioned),
                  count(*) FILTER (WHERE cmo_id = ? AND request_id IS NOT NULL)
           FROM serials WHERE product_code = ?""",
        [cmo_id, cmo_id, cmo_id, product],
    ).fetchone()
    assert row is not None
    return dict(
        zip(
            ("available", "assigned", "assigned_not_exported", "requested"),
            map(int, row),
            strict=True,
        )
    )


# --------------------------------------------------------------------------- pool §5.1


def test_pool_serials_are_added_in_file_order() -> None:
    con = seed(products=[DEMO])
    result = pool(con, product_code=DEMO, serial=["B2", "A1", "C3"])
    assert result.rows_applied == 3 and result.rejects.height == 0
    assert _available(con) == ["B2", "A1", "C3"]


def test_pool_serials_of_a_later_file_come_after_the_earlier_ones() -> None:
    con = seed(products=[DEMO])
    pool(con, product_code=DEMO, serial=["Z9", "Y8"])
    pool(con, product_code=DEMO, serial=["A1"])
    assert _available(con) == ["Z9", "Y8", "A1"]


def test_a_pool_serial_for_an_unknown_product_is_rejected() -> None:
    con = seed(products=[DEMO])
    result = pool(con, product_code=[DEMO, PROD_A], serial=["A1", "A2"])
    assert _rules(result) == [(3, "unknown_product")]
    assert result.rows_applied == 1


def test_a_serial_that_already_exists_for_the_product_is_rejected() -> None:
    con = seed(products=[DEMO, PROD_A], pool={DEMO: ["A1"]})
    result = pool(con, product_code=[DEMO, PROD_A, DEMO], serial=["A1", "A1", "A2"])
    assert _rules(result) == [(2, "serial_exists")]
    assert result.rejects.get_column("value").to_list() == ["A1"]
    assert count(con, "serial = 'A1'") == 2  # the same serial for another product is fine


def test_a_pool_file_of_hundreds_of_products_rejects_each_existing_serial() -> None:
    """The check against stored serials reads the file's products only, in one statement
    whatever their number (a statement of one scan per product took seconds to plan for
    a hundred products and ran out of memory for a few hundred)."""
    codes = [(b := f"09{i:011d}") + gs1_check_digit(b) for i in range(300)]
    con = seed(products=codes, pool={code: ["7", "X7"] for code in codes})
    result = pool(con, product_code=codes * 2, serial=["7"] * 300 + ["8"] * 300)
    assert _rules(result) == [(line, "serial_exists") for line in range(2, 302)]
    assert _available(con, codes[-1]) == ["7", "X7", "8"]


def test_a_serial_exists_once_for_ever_even_after_it_left_the_pool() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, pool={DEMO: ["A1", "A2"]})
    assign(con, cmo_id="C1", product_code=DEMO, quantity="2")
    set_status(con, "serial = 'A1'", export_count=1, shipped=True)
    result = pool(con, product_code=DEMO, serial=["A1", "A2"])
    assert _rules(result) == [(2, "serial_exists"), (3, "serial_exists")]
    assert count(con, "TRUE") == 2


def test_a_serial_repeated_within_the_file_is_rejected_after_its_first_line() -> None:
    con = seed(products=[DEMO])
    result = pool(con, product_code=DEMO, serial=["A1", "A2", "A1", "A1"])
    assert _rules(result) == [(4, "duplicate_serial"), (5, "duplicate_serial")]
    assert "line 2" in result.rejects.get_column("message")[0]
    assert _available(con) == ["A1", "A2"]
    assert result.rows_applied == 2


def test_numeric_serials_are_told_apart_by_their_text_not_their_value() -> None:
    """The pool stores '123' as a number and '0123', '+123', '123 ' as text: a serial that
    exists is rejected in either form, and a serial of the same value written otherwise
    is another serial (SPEC §3.1: codes are strings)."""
    con = seed(products=[DEMO, PROD_A], pool={DEMO: ["123", "0123", "999999999999999999"]})
    result = pool(
        con,
        product_code=[DEMO, DEMO, DEMO, DEMO, DEMO, PROD_A, DEMO],
        serial=["123", "0123", "00123", "+123", "999999999999999999", "123", "1234567890123456789"],
    )
    assert _rules(result) == [(2, "serial_exists"), (3, "serial_exists"), (6, "serial_exists")]
    assert result.rows_applied == 4
    assert _available(con) == [
        "123", "0123", "999999999999999999", "00123", "+123", "1234567890123456789"
    ]  # fmt: skip
    assert count(con, "serial = '123'") == 2  # DEMO's and PROD_A's


def test_serials_are_case_sensitive_and_keep_special_characters() -> None:
    con = seed(products=[DEMO])
    result = pool(con, product_code=DEMO, serial=["abc", "ABC", 'a,"b'])
    assert result.rows_applied == 3
    assert _available(con) == ["abc", "ABC", 'a,"b']


# --------------------------------------------------------------------------- generation §5.2


def test_generated_serials_have_the_configured_length_and_numeric_charset() -> None:
    con = seed(products=[DEMO])
    result = generate(con, product_code=DEMO, quantity="200")
    assert result.rows_applied == 1 and result.rejects.height == 0
    serials = _available(con)
    assert len(serials) == 200
    assert all(re.fullmatch(r"[0-9]{12}", s) for s in serials)
    assert count(con, "source = 'generated'") == 200


def test_generated_serials_may_be_alphanumeric_of_another_length() -> None:
    con = seed(products=[DEMO])
    cfg = SerialsConfig(generated_length=8, generated_charset="alphanumeric")
    generate(con, cfg, product_code=DEMO, quantity="300")
    serials = _available(con)
    assert len(serials) == 300
    assert all(re.fullmatch(r"[0-9A-Z]{8}", s) for s in serials)
    assert any(re.search("[A-Z]", s) for s in serials)


def test_generated_serials_are_unique_and_not_sequential() -> None:
    con = seed(products=[DEMO])
    generate(con, product_code=DEMO, quantity="1000")
    serials = _available(con)
    assert len(set(serials)) == 1000
    numbers = [int(s) for s in serials]
    steps = {b - a for a, b in zip(numbers, numbers[1:], strict=False)}
    assert len(steps) > 900  # random gaps, not a counter
    assert sorted(numbers) != numbers


def test_generation_uses_the_secure_random_generator_by_default() -> None:
    default = inspect.signature(apply_serial_generate).parameters["random_bytes"].default
    assert default is secrets.token_bytes
    assert inspect.signature(random_serials).parameters["random_bytes"].default is (
        secrets.token_bytes
    )


def _generate_one_of_four_digits(
    con: duckdb.DuckDBPyConnection, stream: Iterator[bytes]
) -> FileResult:
    """One DEMO serial of four digits, drawn from `stream` (each draw's random bytes)."""
    cfg = SerialsConfig(generated_length=4, min_randomness_factor=1)
    return apply_serial_generate(
        con, valid_rows(SerialGenerateFile, rows(product_code=DEMO, quantity="1")),
        make_ctx(serials=cfg), random_bytes=lambda n: next(stream),
    )  # fmt: skip


def test_generated_serials_are_unique_against_every_serial_the_product_ever_had() -> None:
    """A draw that hits an existing serial is redrawn; other products do not matter."""
    con = seed(products=[DEMO, PROD_A], cmos={"C1": [DEMO]}, pool={DEMO: ["0000", "0001"]})
    assign(con, cmo_id="C1", product_code=DEMO, quantity="1")  # "0000" left the pool
    # bytes 0,0,0,0 -> "0000" (taken), 0,0,0,1 -> "0001" (taken), then 0,0,0,2 -> "0002"
    stream = iter([bytes([0, 0, 0, 0] + [0] * 16), bytes([0, 0, 0, 1] + [0] * 16),
                   bytes([0, 0, 0, 2] + [0] * 16)])  # fmt: skip
    result = _generate_one_of_four_digits(con, stream)
    assert result.rows_applied == 1
    assert count(con, "source = 'generated'") == 1
    assert count(con, "serial = '0002' AND product_code = ?", [DEMO]) == 1


def test_generated_serials_are_unique_against_numeric_serials_of_the_product() -> None:
    """The same with serials stored as numbers ('1000'); a serial of another product with
    the value drawn does not matter, nor does '01001' (text) for the draw '1001'."""
    con = seed(products=[DEMO, PROD_A], pool={DEMO: ["1000", "01001"], PROD_A: ["1001"]})
    stream = iter([bytes([1, 0, 0, 0] + [0] * 16), bytes([1, 0, 0, 1] + [0] * 16)])
    result = _generate_one_of_four_digits(con, stream)
    assert result.rows_applied == 1
    assert count(con, "serial = '1001' AND product_code = ?", [DEMO]) == 1
    assert count(con, "serial = '1000'") == 1


def test_a_row_that_fills_a_small_space_is_drawn_in_a_few_rounds() -> None:
    """§5.2 at the limit: with min_randomness_factor 1 a row may take the whole space
    (36^2 = 1,296 serials of two characters).  Drawing only the serials still missing took
    one round per serial near the end (1,411 rounds here; 46,656 serials of three
    characters ran for hours and grew to 23 GB); each round now draws in proportion to
    the values still free."""
    con = seed(products=[DEMO], pool={DEMO: ["0A", "ZZ"]})
    rounds = 0

    def counted(n: int) -> bytes:
        nonlocal rounds
        rounds += 1
        return secrets.token_bytes(n)

    cfg = SerialsConfig(generated_length=2, generated_charset="alphanumeric",
                        min_randomness_factor=1)  # fmt: skip
    result = apply_serial_generate(
        con, valid_rows(SerialGenerateFile, rows(product_code=DEMO, quantity="1294")),
        make_ctx(serials=cfg), random_bytes=counted,
    )  # fmt: skip
    assert result.rows_applied == 1 and result.rejects.height == 0
    assert count(con, "source = 'generated'") == 1294
    assert count(con, "product_code = ?", [DEMO]) == 36**2  # every value once
    assert rounds <= 60


def test_random_serials_draw_uniformly_by_rejecting_biased_bytes() -> None:
    # bytes >= 250 would bias digits 0-5 and are skipped
    stream = iter([bytes([250, 255, 7, 19, 251, 33] + [0] * 64)])
    assert random_serials(1, 3, "0123456789", lambda n: next(stream)) == ["793"]


def test_generation_for_an_unknown_product_is_rejected() -> None:
    con = seed(products=[DEMO])
    result = generate(con, product_code=PROD_A, quantity="1")
    assert _rules(result) == [(2, "unknown_product")]


def test_generation_is_rejected_when_it_breaks_the_fmd_randomness_rule() -> None:
    """Space 10^4 with factor 100 allows 100 serials per product from any source."""
    con = seed(products=[DEMO, PROD_A], pool={DEMO: 40})
    cfg = SerialsConfig(generated_length=4, min_randomness_factor=100)
    result = generate(con, cfg, product_code=[DEMO, DEMO, PROD_A], quantity=["60", "1", "100"])
    assert _rules(result) == [(3, "randomness")]
    message = result.rejects.get_column("message")[0]
    assert "100" in message and "at most 0 more" in message
    assert count(con, "product_code = ?", [DEMO]) == 100
    assert count(con, "product_code = ?", [PROD_A]) == 100


def test_the_fmd_rule_rejects_a_row_that_alone_is_too_large() -> None:
    con = seed(products=[DEMO])
    cfg = SerialsConfig(generated_length=4, min_randomness_factor=10000)
    result = generate(con, cfg, product_code=DEMO, quantity="2")
    assert _rules(result) == [(2, "randomness")]
    assert "at most 1 more" in result.rejects.get_column("message")[0]
    assert count(con, "TRUE") == 0


def test_generated_serials_join_the_pool_after_earlier_serials() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, pool={DEMO: 3})
    generate(con, product_code=DEMO, quantity="2")
    assign(con, cmo_id="C1", product_code=DEMO, quantity="3")
    assert _held(con, "C1") == ["S00001", "S00002", "S00003"]


# --------------------------------------------------------------------------- assignment §5.3


def test_assignment_takes_the_oldest_available_serials() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, pool={DEMO: 5})
    result = assign(con, cmo_id="C1", product_code=DEMO, quantity="3")
    assert result.rows_applied == 1
    assert _held(con, "C1") == ["S00001", "S00002", "S00003"]
    assert _available(con) == ["S00004", "S00005"]


def test_assignment_rows_of_one_file_take_serials_in_file_order() -> None:
    con = seed(products=[DEMO, PROD_A], cmos={"C1": [DEMO, PROD_A], "C2": [DEMO]},
               pool={DEMO: 6, PROD_A: ["P1", "P2"]})  # fmt: skip
    result = assign(
        con, cmo_id=["C2", "C1", "C1", "C2"], product_code=[DEMO, PROD_A, DEMO, DEMO],
        quantity=["2", "1", "1", "2"],
    )  # fmt: skip
    assert result.rows_applied == 4
    assert _held(con, "C2") == ["S00001", "S00002", "S00004", "S00005"]
    assert _held(con, "C1") == ["P1", "S00003"]
    assert _available(con) == ["S00006"]


def test_assignment_is_all_or_nothing_and_the_message_gives_the_available_count() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, pool={DEMO: 5})
    result = assign(con, cmo_id="C1", product_code=DEMO, quantity=["3", "3", "2"])
    assert _rules(result) == [(3, "not_enough_available")]
    reject = result.rejects.row(0, named=True)
    assert reject["column"] == "quantity" and reject["value"] == "3"
    assert "only 2 are available" in reject["message"]
    assert _held(con, "C1") == ["S00001", "S00002", "S00003", "S00004", "S00005"]


def test_assignment_worked_example_of_the_serial_guide() -> None:
    """1360 available, 10 assigned earlier; assigning 1100 leaves 260 available, 1110 assigned."""
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, pool={DEMO: 1370})
    assign(con, cmo_id="C1", product_code=DEMO, quantity="10")
    assert _counts(con, "C1")["available"] == 1360
    result = assign(con, cmo_id="C1", product_code=DEMO, quantity="1100")
    assert result.rows_applied == 1
    counts = _counts(con, "C1")
    assert counts["available"] == 260 and counts["assigned"] == 1110


@pytest.mark.parametrize(
    ("cmo_id", "product", "rule"),
    [("C9", DEMO, "unknown_cmo"), ("CX", DEMO, "cmo_deleted"), ("C1", PROD_B, "unknown_product"),
     ("C1", PROD_A, "not_produceable")],
)  # fmt: skip
def test_assignment_needs_a_live_cmo_and_one_of_its_produceable_products(
    cmo_id: str, product: str, rule: str
) -> None:
    con = seed(
        products=[DEMO, PROD_A], cmos={"C1": [DEMO], "CX": [DEMO]}, pool={DEMO: 3, PROD_A: 3}
    )
    con.execute("UPDATE cmos SET deleted = TRUE WHERE cmo_id = 'CX'")
    result = assign(con, cmo_id=cmo_id, product_code=product, quantity="1")
    assert _rules(result) == [(2, rule)]
    assert count(con, "cmo_id IS NOT NULL") == 0


# --------------------------------------------------------------------------- exports §5.4


def _assigned(n: int, pool_size: int | None = None, **kw: Any) -> duckdb.DuckDBPyConnection:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, names={"C1": "Acme Pharma"},
               pool={DEMO: pool_size or n}, **kw)  # fmt: skip
    assign(con, cmo_id="C1", product_code=DEMO, quantity=str(n))
    return con


def test_export_worked_example_of_the_serial_guide() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, names={"C1": "Acme Pharma"},
               pool={DEMO: 1370})  # fmt: skip
    assign(con, cmo_id="C1", product_code=DEMO, quantity="10")
    export(con, cmo_id="C1", product_code=DEMO, quantity="10")
    assign(con, cmo_id="C1", product_code=DEMO, quantity="1100")
    assert _counts(con, "C1")["assigned"] == 1110
    assert _counts(con, "C1")["assigned_not_exported"] == 1100

    refused = export(con, cmo_id="C1", product_code=DEMO, quantity="1105")
    assert _rules(refused) == [(2, "not_enough_assigned")]
    assert "1100" in refused.rejects.get_column("message")[0]
    assert "allow_already_exported" in refused.rejects.get_column("message")[0]
    assert len(_files(con)) == 1

    later = make_ctx(as_of=dt.datetime(2024, 5, 18, 2, 0, 0))
    result = export(
        con, later, cmo_id="C1", product_code=DEMO, quantity="1105", allow_already_exported="Y"
    )
    assert result.rows_applied == 1 and result.rejects.height == 0
    file = _files(con)[-1]
    assert file["count"] == 1105 and file["can_contain_duplicates"] is True
    assert (
        file["file_name"]
        == f"{DEMO}_Acme-Pharma_1105_20240518020000_CanContainDuplicateSerials.csv"
    )
    serials = _items(con, file["file_id"])
    assert len(serials) == 1105 and len(set(serials)) == 1105
    assert serials[:1100] == [f"S{i:05d}" for i in range(11, 1111)]  # the new ones, oldest first
    assert serials[1100:] == [f"S{i:05d}" for i in range(1, 6)]  # then 5 previously exported
    assert _counts(con, "C1")["assigned_not_exported"] == 0


def test_an_export_file_has_the_exact_name_and_records_its_serials() -> None:
    con = _assigned(3)
    result = export(con, cmo_id="C1", product_code=DEMO, quantity="2")
    assert result.rows_applied == 1
    (file,) = _files(con)
    name = f"{DEMO}_Acme-Pharma_2_20240517143005.csv"
    assert file["file_name"] == name
    assert file["rel_path"] == f"serials/C1/{name}"
    assert file["can_contain_duplicates"] is False
    assert file["created"] == CTX.as_of and file["run_id"] == CTX.run_id
    assert _items(con, file["file_id"]) == ["S00001", "S00002"]
    assert count(con, "export_count = 1") == 2


def test_exports_take_never_exported_serials_oldest_assigned_first() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, pool={DEMO: 6})
    assign(con, cmo_id="C1", product_code=DEMO, quantity="2")  # S1, S2
    give_back(con, cmo_id="C1", product_code=DEMO, quantity="1")  # S2 back to the pool
    assign(con, cmo_id="C1", product_code=DEMO, quantity="2")  # S2, S3 assigned later than S1
    export(con, cmo_id="C1", product_code=DEMO, quantity="2")
    export(con, cmo_id="C1", product_code=DEMO, quantity="1")
    first, second = _files(con)
    assert _items(con, first["file_id"]) == ["S00001", "S00002"]
    assert _items(con, second["file_id"]) == ["S00003"]


def test_without_allow_already_exported_the_quantity_is_limited_to_never_exported() -> None:
    con = _assigned(3)
    export(con, cmo_id="C1", product_code=DEMO, quantity="2")
    result = export(con, cmo_id="C1", product_code=DEMO, quantity="2", allow_already_exported="N")
    assert _rules(result) == [(2, "not_enough_assigned")]
    assert "only 1 assigned serials were never exported" in result.rejects.get_column("message")[0]


def test_already_exported_serials_are_taken_least_recently_exported_first() -> None:
    con = _assigned(4)
    export(con, cmo_id="C1", product_code=DEMO, quantity="2")  # S1, S2
    export(con, cmo_id="C1", product_code=DEMO, quantity="2")  # S3, S4
    export(con, cmo_id="C1", product_code=DEMO, quantity="1", allow_already_exported="yes")
    export(con, cmo_id="C1", product_code=DEMO, quantity="3", allow_already_exported="TRUE")
    third, fourth = _files(con)[2:]
    assert _items(con, third["file_id"]) == ["S00001"]
    assert _items(con, fourth["file_id"]) == ["S00002", "S00003", "S00004"]
    assert third["can_contain_duplicates"] and fourth["can_contain_duplicates"]


def test_the_duplicate_suffix_appears_only_when_a_previously_exported_serial_is_included() -> None:
    con = _assigned(3)
    export(con, cmo_id="C1", product_code=DEMO, quantity="2", allow_already_exported="Y")
    export(con, cmo_id="C1", product_code=DEMO, quantity="1", allow_already_exported="Y")
    export(con, cmo_id="C1", product_code=DEMO, quantity="1", allow_already_exported="Y")
    names = [f["file_name"] for f in _files(con)]
    assert not names[0].endswith("_CanContainDuplicateSerials.csv")
    assert not names[1].endswith("_CanContainDuplicateSerials.csv")
    assert names[2].endswith("_1_20240517143005_CanContainDuplicateSerials.csv")


def test_with_allow_already_exported_the_limit_is_assigned() -> None:
    con = _assigned(3)
    export(con, cmo_id="C1", product_code=DEMO, quantity="3")
    result = export(con, cmo_id="C1", product_code=DEMO, quantity="4", allow_already_exported="Y")
    assert _rules(result) == [(2, "not_enough_assigned")]
    assert "at most 3" in result.rejects.get_column("message")[0]


@pytest.mark.parametrize("flag", ["commissioned", "shipped", "decommissioned"])
def test_commissioned_shipped_or_decommissioned_serials_are_never_exported_again(flag: str) -> None:
    con = _assigned(3)
    export(con, cmo_id="C1", product_code=DEMO, quantity="3")
    set_status(con, "serial IN ('S00001', 'S00003')", **{flag: True})
    refused = export(con, cmo_id="C1", product_code=DEMO, quantity="2", allow_already_exported="Y")
    assert _rules(refused) == [(2, "not_enough_assigned")]
    assert "at most 1" in refused.rejects.get_column("message")[0]
    export(con, cmo_id="C1", product_code=DEMO, quantity="1", allow_already_exported="Y")
    assert _items(con, _files(con)[-1]["file_id"]) == ["S00002"]


@pytest.mark.parametrize("flag", ["commissioned", "shipped", "decommissioned"])
def test_a_used_serial_that_was_never_exported_is_not_exported(flag: str) -> None:
    con = _assigned(3)
    set_status(con, "serial = 'S00001'", **{flag: True})
    refused = export(con, cmo_id="C1", product_code=DEMO, quantity="3", allow_already_exported="Y")
    assert _rules(refused) == [(2, "not_enough_assigned")]
    export(con, cmo_id="C1", product_code=DEMO, quantity="2")
    assert _items(con, _files(con)[-1]["file_id"]) == ["S00002", "S00003"]


def test_two_exports_that_would_get_the_same_name_get_a_number() -> None:
    con = _assigned(3)
    export(con, cmo_id="C1", product_code=DEMO, quantity=["1", "1"])
    export(con, cmo_id="C1", product_code=DEMO, quantity="1")
    stem = f"{DEMO}_Acme-Pharma_1_20240517143005"
    assert [f["file_name"] for f in _files(con)] == [
        f"{stem}.csv",
        f"{stem}-2.csv",
        f"{stem}-3.csv",
    ]


def test_a_run_in_the_same_second_clashes_and_a_later_one_does_not() -> None:
    # names hold the clock to the second: a run at AS_OF + 0.5 s writes the same name
    # (numbered); one a second later does not clash with either
    con = _assigned(3)
    export(con, cmo_id="C1", product_code=DEMO, quantity="1")
    half = make_ctx(as_of=AS_OF + dt.timedelta(microseconds=500_000), run_id="R2")
    export(con, half, cmo_id="C1", product_code=DEMO, quantity="1")
    later = make_ctx(as_of=AS_OF + dt.timedelta(seconds=1), run_id="R3")
    export(con, later, cmo_id="C1", product_code=DEMO, quantity="1")
    assert [f["file_name"] for f in _files(con)] == [
        f"{DEMO}_Acme-Pharma_1_20240517143005.csv",
        f"{DEMO}_Acme-Pharma_1_20240517143005-2.csv",
        f"{DEMO}_Acme-Pharma_1_20240517143006.csv",
    ]


def test_the_same_name_for_another_cmo_is_no_clash() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO], "C2": [DEMO]},
               names={"C1": "Same", "C2": "Same"}, pool={DEMO: 2})  # fmt: skip
    assign(con, cmo_id=["C1", "C2"], product_code=DEMO, quantity="1")
    export(con, cmo_id=["C1", "C2"], product_code=DEMO, quantity="1")
    files = _files(con)
    assert [f["file_name"] for f in files] == [f"{DEMO}_Same_1_20240517143005.csv"] * 2
    assert [f["rel_path"].split("/")[1] for f in files] == ["C1", "C2"]


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("Acme Pharma GmbH", "Acme-Pharma-GmbH"),
        ("Müller & Söhne, AG", "M-ller-S-hne-AG"),
        ("A__B  C", "A-B-C"),
        ("a/b\\c", "a-b-c"),
        ("../../etc", "etc"),
        ("-.-Acme", "Acme"),
        (" Acme", "Acme"),
        ("Acme v1.2-beta", "Acme-v1.2-beta"),
        ("X" * 70, "X" * 60),
        ("???", "C1"),
        ("...", "C1"),
        ("", "C1"),
        (None, "C1"),
    ],
)
def test_the_cmo_name_is_made_safe_in_the_spec_order(name: str | None, safe: str) -> None:
    assert safe_cmo_name(name, "C1") == safe


def test_the_name_is_cut_to_60_after_the_runs_are_collapsed() -> None:
    # 30 x "a b" collapses to 89 characters "a-b-a-b..."; the cut keeps the first 60
    assert safe_cmo_name("a  b " * 30, "C1") == ("a-b-" * 15)[:60]


def test_export_file_name_pattern() -> None:
    created = dt.datetime(2024, 1, 2, 3, 4, 5)
    assert export_file_name(DEMO, "Acme", "C1", 7, created, False) == (
        f"{DEMO}_Acme_7_20240102030405.csv"
    )
    assert export_file_name(DEMO, "", "C1", 7, created, True) == (
        f"{DEMO}_C1_7_20240102030405_CanContainDuplicateSerials.csv"
    )


def test_an_export_file_never_lands_outside_its_cmo_folder() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, names={"C1": "../../../x"}, pool={DEMO: 1})
    assign(con, cmo_id="C1", product_code=DEMO, quantity="1")
    export(con, cmo_id="C1", product_code=DEMO, quantity="1")
    (file,) = _files(con)
    assert file["rel_path"] == f"serials/C1/{DEMO}_x_1_20240517143005.csv"


@pytest.mark.parametrize(
    ("cmo_id", "product", "rule"),
    [("C9", DEMO, "unknown_cmo"), ("CX", DEMO, "cmo_deleted"), ("C1", PROD_B, "unknown_product")],
)
def test_exports_need_a_live_cmo_and_an_existing_product(
    cmo_id: str, product: str, rule: str
) -> None:
    con = _assigned(2)
    seed(con, cmos={"CX": [DEMO]})
    con.execute("UPDATE cmos SET deleted = TRUE WHERE cmo_id = 'CX'")
    result = export(con, cmo_id=cmo_id, product_code=product, quantity="1")
    assert _rules(result) == [(2, rule)]
    assert _files(con) == []


def test_a_cmo_may_export_a_product_it_no_longer_produces() -> None:
    con = _assigned(2)
    con.execute("DELETE FROM cmo_products")
    assert export(con, cmo_id="C1", product_code=DEMO, quantity="2").rows_applied == 1


def test_a_partner_cmo_may_be_exported_to_but_not_its_requested_serials() -> None:
    con = _assigned(3, partners=["C1"])
    request(con, request_id="R1", cmo_id="C1", product_code=DEMO, quantity="2")
    refused = export(con, cmo_id="C1", product_code=DEMO, quantity="2", allow_already_exported="Y")
    assert _rules(refused) == [(2, "not_enough_assigned")]
    export(con, cmo_id="C1", product_code=DEMO, quantity="1")
    assert _items(con, _files(con)[-1]["file_id"]) == ["S00003"]


def test_export_rows_of_one_file_share_the_never_exported_serials() -> None:
    con = _assigned(3)
    result = export(con, cmo_id="C1", product_code=DEMO, quantity=["2", "2", "1"])
    assert _rules(result) == [(3, "not_enough_assigned")]
    files = _files(con)
    assert [_items(con, f["file_id"]) for f in files] == [["S00001", "S00002"], ["S00003"]]


# --------------------------------------------------------------------------- partner requests §5.5


def _partner(n: int = 5) -> duckdb.DuckDBPyConnection:
    return _assigned(n, partners=["C1"])


def test_a_partner_request_is_served_oldest_first_from_assigned_not_exported() -> None:
    con = _partner(5)
    export(con, cmo_id="C1", product_code=DEMO, quantity="1")  # S1 exported
    result = request(con, request_id="REQ-1", cmo_id="C1", product_code=DEMO, quantity="2")
    assert result.rows_applied == 1 and result.rejects.height == 0
    (answer,) = _files(con, "partner")
    assert answer["rel_path"] == "partners/C1/REQ-1.csv" and answer["file_name"] == "REQ-1.csv"
    assert answer["count"] == 2 and answer["request_id"] == "REQ-1"
    assert _items(con, answer["file_id"]) == ["S00002", "S00003"]


def test_a_decommissioned_serial_is_never_served_to_a_partner() -> None:
    con = _partner(3)
    set_status(con, "serial = 'S00001'", decommissioned=True)
    refused = request(con, request_id="R1", cmo_id="C1", product_code=DEMO, quantity="3")
    assert _rules(refused) == [(2, "not_enough_assigned")]
    request(con, request_id="R2", cmo_id="C1", product_code=DEMO, quantity="2")
    assert _items(con, _files(con, "partner")[-1]["file_id"]) == ["S00002", "S00003"]


def test_served_serials_leave_assigned_and_count_as_requested() -> None:
    con = _partner(5)
    request(con, request_id="R1", cmo_id="C1", product_code=DEMO, quantity="2")
    counts = _counts(con, "C1")
    assert counts["assigned"] == 3 and counts["requested"] == 2
    assert counts["assigned_not_exported"] == 3
    assert _held(con, "C1", "sid")[:2] == ["S00001", "S00002"]  # still the CMO's
    assert count(con, "request_id = 'R1'") == 2


@pytest.mark.parametrize("status", ["none", "pending"])
def test_only_cmos_with_an_active_partnership_may_request(status: str) -> None:
    con = _assigned(3)
    con.execute("UPDATE cmos SET partnership_status = ?", [status])
    result = request(con, request_id="R1", cmo_id="C1", product_code=DEMO, quantity="1")
    assert _rules(result) == [(2, "not_partner")]
    assert f"'{status}'" in result.rejects.get_column("message")[0]
    assert _files(con, "partner") == []


def test_a_deleted_partner_cannot_request() -> None:
    con = _partner(3)
    con.execute("UPDATE cmos SET deleted = TRUE")
    result = request(con, request_id="R1", cmo_id="C1", product_code=DEMO, quantity="1")
    assert _rules(result) == [(2, "cmo_deleted")]


def test_a_request_is_rejected_whole_when_there_are_not_enough_serials() -> None:
    con = _partner(3)
    export(con, cmo_id="C1", product_code=DEMO, quantity="1")
    result = request(con, request_id="R1", cmo_id="C1", product_code=DEMO, quantity="3")
    assert _rules(result) == [(2, "not_enough_assigned")]
    assert "holds only 2" in result.rejects.get_column("message")[0]
    assert count(con, "request_id IS NOT NULL") == 0


def test_requests_of_one_file_are_served_in_file_order_from_what_is_left() -> None:
    con = _partner(3)
    result = request(con, request_id=["R1", "R2", "R3"], cmo_id="C1", product_code=DEMO,
                     quantity=["2", "2", "1"])  # fmt: skip
    assert _rules(result) == [(3, "not_enough_assigned")]
    r1, r3 = _files(con, "partner")
    assert _items(con, r1["file_id"]) == ["S00001", "S00002"]
    assert _items(con, r3["file_id"]) == ["S00003"]


def test_a_repeated_request_id_with_the_same_values_warns_and_serves_nothing_new() -> None:
    con = _partner(5)
    request(con, request_id="R1", cmo_id="C1", product_code=DEMO, quantity="2")
    again = request(con, request_id="R1", cmo_id="C1", product_code=DEMO, quantity="2")
    assert again.rejects.height == 0 and again.rows_applied == 0
    assert len(again.warnings) == 1 and "R1" in again.warnings[0]
    assert len(_files(con, "partner")) == 1
    assert count(con, "request_id IS NOT NULL") == 2


def test_a_repeated_request_id_within_one_file_is_served_once() -> None:
    con = _partner(5)
    result = request(con, request_id=["R1", "R1"], cmo_id="C1", product_code=DEMO, quantity="2")
    assert result.rows_applied == 1 and len(result.warnings) == 1
    assert count(con, "request_id IS NOT NULL") == 2


@pytest.mark.parametrize(("cmo_id", "product", "quantity"), [("C1", DEMO, "3"), ("C2", DEMO, "2")])
def test_a_repeated_request_id_with_different_values_is_rejected(
    cmo_id: str, product: str, quantity: str
) -> None:
    con = _partner(5)
    seed(con, cmos={"C2": [DEMO]}, partners=["C2"])
    request(con, request_id="R1", cmo_id="C1", product_code=DEMO, quantity="2")
    result = request(con, request_id="R1", cmo_id=cmo_id, product_code=product, quantity=quantity)
    assert _rules(result) == [(2, "request_id_reused")]
    assert count(con, "request_id IS NOT NULL") == 2


def test_a_request_id_reused_for_another_product_is_a_rejected_row() -> None:
    """§5.5 (issue 18 item 9): R1 = C1/A/2 served, then R1 = C1/B/2 — same CMO and quantity,
    another product — is a rejected row, not 'served before'; B's serials stay assigned.
    The same within one file."""
    con = seed(products=[PROD_A, PROD_B], cmos={"C1": [PROD_A, PROD_B]}, partners=["C1"],
               pool={PROD_A: 3, PROD_B: [f"B{i}" for i in range(3)]})  # fmt: skip
    assign(con, cmo_id="C1", product_code=PROD_A, quantity="3")
    assign(con, cmo_id="C1", product_code=PROD_B, quantity="3")
    served = request(con, request_id="R1", cmo_id="C1", product_code=PROD_A, quantity="2")
    assert served.rows_applied == 1
    again = request(con, request_id="R1", cmo_id="C1", product_code=PROD_B, quantity="2")
    assert _rules(again) == [(2, "request_id_reused")] and again.warnings == []
    assert f"product {PROD_A}" in again.rejects.get_column("message")[0]
    assert count(con, "request_id IS NOT NULL") == 2
    assert count(con, f"product_code = '{PROD_B}' AND request_id IS NULL AND cmo_id = 'C1'") == 3
    one_file = request(con, request_id=["R2", "R2"], cmo_id="C1",
                       product_code=[PROD_A, PROD_B], quantity="1")  # fmt: skip
    assert _rules(one_file) == [(3, "request_id_reused")]


# --------------------------------------------------------------------------- returns §5.6


def test_returns_take_the_most_recently_assigned_first() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, pool={DEMO: 5})
    assign(con, cmo_id="C1", product_code=DEMO, quantity="2")  # S1, S2
    assign(con, cmo_id="C1", product_code=DEMO, quantity="2")  # S3, S4
    result = give_back(con, cmo_id="C1", product_code=DEMO, quantity="3")
    assert result.rows_applied == 1
    assert _held(con, "C1") == ["S00001"]


def test_returned_serials_keep_their_original_arrival_order_in_the_pool() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO], "C2": [DEMO]}, pool={DEMO: 5})
    assign(con, cmo_id="C1", product_code=DEMO, quantity="3")  # S1-S3
    give_back(con, cmo_id="C1", product_code=DEMO, quantity="2")  # S3, S2 back
    assert _available(con) == ["S00002", "S00003", "S00004", "S00005"]
    assign(con, cmo_id="C2", product_code=DEMO, quantity="3")
    assert _held(con, "C2") == ["S00002", "S00003", "S00004"]


def test_returning_all_of_nothing_is_applied_with_a_warning() -> None:
    con = _assigned(2)
    export(con, cmo_id="C1", product_code=DEMO, quantity="2")
    result = give_back(con, cmo_id="C1", product_code=DEMO, quantity="ALL")
    assert result.rows_applied == 1 and result.rejects.height == 0
    assert len(result.warnings) == 1 and "nothing was returned" in result.warnings[0]
    assert give_back(con, cmo_id="C1", product_code=DEMO, quantity="ALL").warnings
    fresh = _assigned(2)
    assert give_back(fresh, cmo_id="C1", product_code=DEMO, quantity="ALL").warnings == []


def test_only_assigned_not_exported_serials_return() -> None:
    con = _partner(6)
    export(con, cmo_id="C1", product_code=DEMO, quantity="1")  # S1
    request(con, request_id="R1", cmo_id="C1", product_code=DEMO, quantity="1")  # S2
    set_status(con, "serial = 'S00003'", commissioned=True)
    set_status(con, "serial = 'S00004'", shipped=True)
    set_status(con, "serial = 'S00005'", decommissioned=True)
    result = give_back(con, cmo_id="C1", product_code=DEMO, quantity="ALL")
    assert result.rows_applied == 1
    assert _available(con) == ["S00006"]
    assert _held(con, "C1", "sid") == ["S00001", "S00002", "S00003", "S00004", "S00005"]


def test_returning_more_than_the_cmo_holds_is_rejected() -> None:
    con = _assigned(3)
    export(con, cmo_id="C1", product_code=DEMO, quantity="1")
    result = give_back(con, cmo_id="C1", product_code=DEMO, quantity="3")
    assert _rules(result) == [(2, "not_enough_assigned")]
    assert "holds only 2" in result.rejects.get_column("message")[0]
    assert _available(con) == []


def test_return_all_of_one_product_leaves_other_products() -> None:
    con = seed(products=[DEMO, PROD_A], cmos={"C1": [DEMO, PROD_A]}, pool={DEMO: 2, PROD_A: 2})
    assign(con, cmo_id="C1", product_code=[DEMO, PROD_A], quantity="2")
    give_back(con, cmo_id="C1", product_code=DEMO, quantity="all")
    assert _counts(con, "C1", DEMO)["assigned"] == 0
    assert _counts(con, "C1", PROD_A)["assigned"] == 2


def test_return_rows_of_one_file_build_on_each_other() -> None:
    con = _assigned(3)
    result = give_back(con, cmo_id="C1", product_code=DEMO, quantity=["2", "2", "1"])
    assert _rules(result) == [(3, "not_enough_assigned")]
    assert _held(con, "C1") == []


def test_returns_need_a_live_cmo() -> None:
    con = _assigned(2)
    result = give_back(con, cmo_id="C9", product_code=DEMO, quantity="1")
    assert _rules(result) == [(2, "unknown_cmo")]


def test_a_serial_that_was_returned_and_reassigned_exports_in_its_new_assignment_order() -> None:
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, pool={DEMO: 3})
    assign(con, cmo_id="C1", product_code=DEMO, quantity="3")
    give_back(con, cmo_id="C1", product_code=DEMO, quantity="3")
    assign(con, cmo_id="C1", product_code=DEMO, quantity="3")
    export(con, cmo_id="C1", product_code=DEMO, quantity="3")
    assert _items(con, _files(con)[0]["file_id"]) == ["S00001", "S00002", "S00003"]


def test_empty_files_change_nothing() -> None:
    con = memory_connection()
    empty = pl.DataFrame(schema={"cmo_id": pl.String, "product_code": pl.String,
                                 "quantity": pl.String, "allow_already_exported": pl.String,
                                 "_line": pl.Int64})  # fmt: skip
    assert apply_exports(con, empty, CTX).rows_applied == 0
    assert apply_assignments(con, empty.drop("allow_already_exported"), CTX).rows_applied == 0
    assert count(con, "TRUE") == 0


# --------------------------------------------------------------------------- invariants (property)

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["pool", "assign", "export", "export_again", "request", "return", "use"]),
        st.sampled_from(["C1", "C2"]),
        st.integers(min_value=1, max_value=6),
    ),
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS)
def test_no_sequence_of_files_breaks_the_serial_invariants(ops: list[tuple[str, str, int]]) -> None:
    """Whatever the order of files: a serial exists once, is held by one CMO at most, every
    export file holds distinct serials of its CMO, and the §8 invariants hold."""
    con = seed(products=[DEMO], cmos={"C1": [DEMO], "C2": [DEMO]}, partners=["C2"], pool={DEMO: 5})
    fresh = iter(range(1000))
    for i, (op, cmo_id, n) in enumerate(ops):
        q = str(n)
        if op == "pool":
            pool(con, product_code=DEMO, serial=[f"N{next(fresh)}" for _ in range(n)])
        elif op == "assign":
            assign(con, cmo_id=cmo_id, product_code=DEMO, quantity=q)
        elif op in ("export", "export_again"):
            allow = "Y" if op == "export_again" else "N"
            export(con, cmo_id=cmo_id, product_code=DEMO, quantity=q, allow_already_exported=allow)
        elif op == "request":
            request(con, request_id=f"R{i}", cmo_id=cmo_id, product_code=DEMO, quantity=q)
        elif op == "return":
            give_back(con, cmo_id=cmo_id, product_code=DEMO, quantity=q)
        else:
            set_status(
                con,
                f"sid = (SELECT min(sid) FROM serials WHERE cmo_id = '{cmo_id}' AND NOT commissioned)",
                commissioned=True,
            )
        invariants = serial_invariants(con, serial_balance_report(con))
        assert all(invariants.values()), (op, invariants)
        assert count(con, "cmo_id IS NULL AND (export_count > 0 OR request_id IS NOT NULL)") == 0
        assert count(con, "cmo_id IS NULL AND assign_seq IS NOT NULL") == 0
        assert count(con, "request_id IS NOT NULL AND cmo_id <> 'C2'") == 0
    register_outbox_items(con)
    files = con.execute(
        """SELECT f.file_id, f.cmo_id, f.count, count(*), count(DISTINCT i.serial),
                  count(*) FILTER (WHERE s.cmo_id = f.cmo_id)
           FROM outbox_files f JOIN outbox_items i USING (file_id)
           JOIN serials s ON s.product_code = i.product_code AND s.serial = i.serial
           GROUP BY ALL"""
    ).fetchall()
    for _, _, declared, items, distinct, held in files:
        assert declared == items == distinct == held
    exported = con.execute(
        """SELECT s.export_count, count(i.file_id) FROM serials s
           LEFT JOIN outbox_items i ON i.product_code = s.product_code AND i.serial = s.serial
           AND i.file_id IN (SELECT file_id FROM outbox_files WHERE kind = 'export')
           GROUP BY s.sid, s.export_count"""
    ).fetchall()
    assert all(a == b for a, b in exported)


def test_one_generation_row_is_limited_in_size() -> None:
    con = seed(products=[DEMO])
    cfg = SerialsConfig(generated_length=20, generated_charset="alphanumeric")
    result = generate(con, cfg, product_code=DEMO, quantity="10000001")
    assert _rules(result) == [(2, "quantity_too_large")]
    assert count(con, "TRUE") == 0


def _reference_exports(n: int, files: list[list[tuple[int, bool]]]) -> list[list[str] | None]:
    """§5.4 serial by serial for one CMO holding `n` serials assigned in order: the
    contents of each export row (None = rejected)."""
    serials = [f"S{i:05d}" for i in range(1, n + 1)]
    count = dict.fromkeys(serials, 0)
    last = dict.fromkeys(serials, 0)
    out: list[list[str] | None] = []
    file_id = 0
    for rows_ in files:
        for qty, allow in rows_:
            fresh = [s for s in serials if count[s] == 0]
            if qty > (n if allow else len(fresh)):
                out.append(None)
                continue
            file_id += 1
            new = fresh[:qty]
            again = sorted((s for s in serials if count[s] > 0), key=lambda s: (last[s], s))
            taken = new + again[: qty - len(new)]
            for s in taken:
                count[s] += 1
                last[s] = file_id
            out.append(taken)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(st.tuples(st.integers(1, 9), st.booleans()), min_size=1, max_size=4),
        min_size=1,
        max_size=4,
    )
)
def test_exports_equal_a_serial_by_serial_reference(files: list[list[tuple[int, bool]]]) -> None:
    """Any sequence of export files (rows with and without allow_already_exported, a
    serial exported twice by one file included) writes what §5.4 says, serial by serial."""
    con = _assigned(12)
    expected = _reference_exports(12, files)
    got: list[list[str] | None] = []
    for rows_ in files:
        before = {f["file_id"] for f in _files(con)}
        result = export(
            con,
            cmo_id=["C1"] * len(rows_),
            product_code=[DEMO] * len(rows_),
            quantity=[str(q) for q, _ in rows_],
            allow_already_exported=["Y" if a else "N" for _, a in rows_],
        )
        rejected = {int(line) for line in result.rejects.get_column("line").to_list()}
        new_files = iter(f for f in _files(con) if f["file_id"] not in before)
        for line in range(2, 2 + len(rows_)):
            got.append(None if line in rejected else _items(con, next(new_files)["file_id"]))
    assert got == expected


class _Reference:
    """§5.3–§5.6 serial by serial, for one product and one partner CMO `C1`."""

    def __init__(self, n: int) -> None:
        self.pool = [f"S{i:05d}" for i in range(1, n + 1)]  # arrival order
        self.holder: dict[str, str | None] = dict.fromkeys(self.pool)
        self.seq: dict[str, int] = {}
        self.count = dict.fromkeys(self.pool, 0)
        self.last = dict.fromkeys(self.pool, 0)
        self.request: dict[str, str] = {}
        self.used: set[str] = set()  # reported decommissioned by the CMO
        self.next_seq = self.next_file = 0

    def _held(self) -> list[str]:
        return sorted(
            (s for s in self.pool if self.holder[s] and s not in self.request),
            key=lambda s: self.seq[s],
        )

    def _unused(self) -> list[str]:
        return [s for s in self._held() if s not in self.used]

    def decommission(self, q: int) -> str | None:
        """The CMO reports its q-th held serial (in assignment order) decommissioned."""
        held = self._held()
        if not held:
            return None
        serial = held[(q - 1) % len(held)]
        self.used.add(serial)
        return serial

    def assign(self, q: int) -> list[str] | None:
        free = [s for s in self.pool if self.holder[s] is None]
        if q > len(free):
            return None
        for s in free[:q]:
            self.holder[s], self.seq[s] = "C1", self.next_seq
            self.next_seq += 1
        return free[:q]

    def export(self, q: int, allow: bool) -> list[str] | None:
        held = self._unused()
        fresh = [s for s in held if self.count[s] == 0]
        if q > (len(held) if allow else len(fresh)):
            return None
        again = sorted(
            (s for s in held if self.count[s]), key=lambda s: (self.last[s], self.seq[s])
        )
        taken = fresh[:q] + again[: q - len(fresh[:q])]
        self.next_file += 1
        for s in taken:
            self.count[s] += 1
            self.last[s] = self.next_file
        return taken

    def serve(self, q: int, request_id: str) -> list[str] | None:
        fresh = [s for s in self._unused() if self.count[s] == 0]
        if q > len(fresh):
            return None
        for s in fresh[:q]:
            self.request[s] = request_id
        return fresh[:q]

    def give_back(self, q: int | None) -> list[str] | None:
        fresh = [s for s in self._unused() if self.count[s] == 0][::-1]  # newest first
        if q is not None and q > len(fresh):
            return None
        for s in fresh[: len(fresh) if q is None else q]:
            self.holder[s] = None
            del self.seq[s]
        return []


_ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["assign", "export", "export_allow", "request", "return", "return_all", "decommission"]
        ),
        st.integers(1, 6),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops)
def test_every_serial_rule_equals_a_serial_by_serial_reference(ops: list[tuple[str, int]]) -> None:
    """Assignments, exports, partner requests, returns and serials the CMO reports
    decommissioned, in any order: the same files and the same pool order as §5 applied
    serial by serial."""
    con = seed(products=[DEMO], cmos={"C1": [DEMO]}, partners=["C1"], pool={DEMO: 15})
    ref = _Reference(15)
    for i, (op, q) in enumerate(ops):
        before = {
            f["file_id"] for f in con.execute("SELECT file_id FROM outbox_files").pl().to_dicts()
        }
        key = dict(cmo_id="C1", product_code=DEMO)
        if op == "assign":
            expected, result = ref.assign(q), assign(con, quantity=str(q), **key)
        elif op.startswith("export"):
            allow = op == "export_allow"
            expected = ref.export(q, allow)
            result = export(
                con, quantity=str(q), allow_already_exported="Y" if allow else "N", **key
            )
        elif op == "decommission":
            serial = ref.decommission(q)
            if serial is not None:
                set_status(con, f"serial = '{serial}'", decommissioned=True)
            continue
        elif op == "request":
            expected = ref.serve(q, f"R{i}")
            result = request(con, request_id=f"R{i}", quantity=str(q), **key)
        else:
            q_text = "ALL" if op == "return_all" else str(q)
            expected = ref.give_back(None if op == "return_all" else q)
            result = give_back(con, quantity=q_text, **key)
        assert (result.rows_applied == 0) == (expected is None), (op, q)
        new = [
            r[0]
            for r in con.execute("SELECT file_id FROM outbox_files ORDER BY file_id").fetchall()
            if r[0] not in before
        ]
        if op in ("export", "export_allow", "request") and expected is not None:
            assert _items(con, new[0]) == expected, (op, q)
        assert _available(con) == [s for s in ref.pool if ref.holder[s] is None]
    held = [
        r[0]
        for r in con.execute(
            "SELECT serial FROM serials WHERE cmo_id = 'C1' AND request_id IS NULL ORDER BY assign_seq"
        ).fetchall()
    ]
    assert held == ref._held()


# ------------------------------------------------------------ reading serials back by range


_A, _B = "11223344556675", "04000000000013"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(
        st.tuples(st.sampled_from([_A, _B]), st.integers(0, 38), st.integers(1, 12)),
        min_size=1,
        max_size=12,
    )
)
def test_ranges_read_in_few_scans_give_each_range_its_serials_in_order(
    picks: list[tuple[str, int, int]],
) -> None:
    """Touching, overlapping, repeated and unsorted ranges of two products."""
    con = seed(products=[_A, _B], pool={_A: [f"A{i}" for i in range(50)], _B: 50})
    pids = dict(con.execute("SELECT product_code, pid FROM serial_products").fetchall())
    ranges = pl.DataFrame(
        {
            "pid": [pids[code] for code, _, _ in picks],
            "lo": [lo for _, lo, _ in picks],
            "hi": [lo + n for _, lo, n in picks],
        },
        schema={"pid": pl.Int32, "lo": pl.Int64, "hi": pl.Int64},
    )
    by_pid = {
        pid: [
            s
            for (s,) in con.execute(
                "SELECT coalesce(txt, num::VARCHAR) FROM pool WHERE pid = ? ORDER BY pseq", [pid]
            ).fetchall()
        ]
        for pid in pids.values()
    }
    expected = [s for code, lo, n in picks for s in by_pid[pids[code]][lo : lo + n]]
    assert pool_serials(con, ranges).to_list() == expected


def test_serials_stored_out_of_arrival_order_are_still_read_in_arrival_order() -> None:
    """A scan usually returns a product's serials in arrival order (they are stored so)
    and is then not sorted; rows stored in another order are sorted."""
    con = seed(products=[_A], pool={_A: ["S0", "S1", "S2", "S3"]})
    pid = con.execute("SELECT pid FROM serial_products").fetchone()[0]  # type: ignore[index]
    rows = con.execute("SELECT pid, pseq, num, txt FROM pool ORDER BY pseq DESC").fetchall()
    con.execute("DELETE FROM pool")
    con.executemany("INSERT INTO pool VALUES (?, ?, ?, ?)", rows)  # stored last first
    ranges = pl.DataFrame(
        {"pid": [pid, pid], "lo": [2, 0], "hi": [4, 3]},
        schema={"pid": pl.Int32, "lo": pl.Int64, "hi": pl.Int64},
    )
    assert pool_serials(con, ranges).to_list() == ["S2", "S3", "S0", "S1", "S2"]


def test_a_store_written_before_decommissioned_existed_gets_the_column_when_opened(
    tmp_path: Path,
) -> None:
    """Its serials are not decommissioned, keep their status, and the rules run on it."""
    path = tmp_path / "old.duckdb"
    old = duckdb.connect(str(path))
    for ddl in SERIAL_DDL:
        old.execute(ddl)
    old.execute("DROP VIEW serials")  # the store as an earlier cmi wrote it
    old.execute("ALTER TABLE serial_runs DROP COLUMN decommissioned")
    assert "decommissioned" not in [r[0] for r in old.execute("DESCRIBE serial_runs").fetchall()]
    old.execute("INSERT INTO serial_products VALUES (?, 1, 2)", [DEMO])
    old.execute("INSERT INTO pool VALUES (1, 0, NULL, 'A1'), (1, 1, NULL, 'A2')")
    old.execute("INSERT INTO pool_loads VALUES (1, 0, 2, 'pool', 'r0', 'p.csv')")
    old.execute(
        "INSERT INTO serial_runs VALUES (1, 0, 2, NULL, NULL, 0, NULL, NULL, FALSE, TRUE, 'L', NULL)"
    )
    old.close()
    store = open_store(path)
    try:
        con = store.con
        runs = load_runs(con, [1])
        assert runs.select("decommissioned", "shipped", "lot").rows() == [(False, True, "L")]
        set_status(con, "serial = 'A1'", decommissioned=True)
        assert con.execute(
            "SELECT serial, decommissioned, shipped FROM serials ORDER BY serial"
        ).fetchall() == [("A1", True, True), ("A2", False, True)]
    finally:
        store.close()
