"""The file contracts of the serial side: headers and per-row rules (SPEC §3.1, §4, §5)."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from helpers_serials import DEMO, rows

from schemas.base import header_problems, validate_rows
from schemas.master_data import CmosFile, PartnershipsFile, ProductsFile
from schemas.serials import (
    AssignmentsFile,
    ExportsFile,
    PartnerRequestsFile,
    SerialGenerateFile,
    SerialPoolFile,
    SerialReturnsFile,
)

ALL_MODELS = [
    ProductsFile, CmosFile, PartnershipsFile, SerialPoolFile, SerialGenerateFile,
    AssignmentsFile, SerialReturnsFile, ExportsFile, PartnerRequestsFile,
]  # fmt: skip


def _rejects(model: Any, frame: pl.DataFrame) -> list[dict[str, Any]]:
    return validate_rows(model, frame)[1].to_dicts()


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("model", "header"),
    [
        (ProductsFile, ["product_code", "product_name"]),
        (CmosFile, ["cmo_id"]),
        (PartnershipsFile, ["cmo_id", "event"]),
        (SerialPoolFile, ["product_code", "serial"]),
        (SerialGenerateFile, ["product_code", "quantity"]),
        (AssignmentsFile, ["cmo_id", "product_code", "quantity"]),
        (SerialReturnsFile, ["cmo_id", "product_code", "quantity"]),
        (ExportsFile, ["cmo_id", "product_code", "quantity"]),
        (PartnerRequestsFile, ["request_id", "cmo_id", "product_code", "quantity"]),
    ],
)
def test_a_header_with_the_required_columns_is_accepted(model: Any, header: list[str]) -> None:
    assert header_problems(model, header) is None
    for i, name in enumerate(header):
        problem = header_problems(model, header[:i] + header[i + 1 :])
        assert problem is not None and f"'{name}'" in problem and "missing" in problem


def test_an_unknown_column_rejects_the_file_naming_it() -> None:
    """A misspelt optional column must never be silently ignored."""
    problem = header_problems(ExportsFile, ["cmo_id", "product_code", "quantity", "allow_exported"])
    assert problem is not None and "unknown column 'allow_exported'" in problem
    assert "allow_already_exported" in problem  # lists the columns the kind has


def test_a_misspelt_optional_cmo_column_rejects_the_file() -> None:
    problem = header_problems(CmosFile, ["cmo_id", "cmo_name", "ctiy", "country"])
    assert problem is not None and "'ctiy'" in problem


def test_a_column_given_twice_rejects_the_file_naming_it() -> None:
    problem = header_problems(SerialPoolFile, ["product_code", "serial", "serial"])
    assert problem is not None and "'serial' appears twice" in problem


def test_optional_columns_may_be_left_out_of_the_header() -> None:
    assert header_problems(ExportsFile, ["quantity", "product_code", "cmo_id"]) is None
    assert header_problems(CmosFile, ["cmo_id", "action", "sgln"]) is None


def test_columns_left_out_of_the_header_are_empty_cells_after_validation() -> None:
    good, _ = validate_rows(ProductsFile, rows(product_code=DEMO, product_name="Demo"))
    assert good.get_column("stock_unit").to_list() == [None]


# --------------------------------------------------------------------------- per-row rejects


def test_a_bad_row_is_rejected_with_line_column_value_rule_and_message() -> None:
    frame = rows(product_code=[DEMO, DEMO, DEMO], serial=["A1", "A 2", "A3"])
    good, rejects = validate_rows(SerialPoolFile, frame)
    assert good.get_column("serial").to_list() == ["A1", "A3"]
    assert good.get_column("_line").to_list() == [2, 4]
    (reject,) = rejects.to_dicts()
    assert reject["line"] == 3
    assert reject["column"] == "serial"
    assert reject["value"] == "A 2"
    assert reject["rule"] == "serial"
    assert "GS1 character set 82" in reject["message"] and "'A 2'" in reject["message"]


def test_in_a_file_known_to_be_gs1_text_a_serial_is_checked_by_its_length() -> None:
    """The scan (connectors.csv_reader.scan_file) vouches for the characters; a serial
    longer than 20 is still rejected, with the same rule and message."""
    frame = rows(product_code=[DEMO, DEMO], serial=["A" * 20, "B" * 21])
    good, rejects = validate_rows(SerialPoolFile, frame, gs1_text=True)
    assert good.get_column("serial").to_list() == ["A" * 20]
    (reject,) = rejects.to_dicts()
    assert (reject["line"], reject["rule"]) == (3, "serial")
    assert "GS1 character set 82" in reject["message"]
    # the characters are not looked at: only a file that holds GS1 characters alone may say so
    lenient, none = validate_rows(
        SerialPoolFile, rows(product_code=DEMO, serial="A 2"), gs1_text=True
    )
    assert lenient.height == 1 and none.height == 0


def test_a_missing_required_cell_is_the_rule_required() -> None:
    (reject,) = _rejects(SerialPoolFile, rows(product_code=DEMO, serial=None))
    assert reject == {
        "line": 2,
        "column": "serial",
        "value": None,
        "rule": "required",
        "message": "serial is required",
    }


def test_every_failing_cell_of_a_row_is_reported() -> None:
    rejects = _rejects(AssignmentsFile, rows(cmo_id="-x", product_code="123", quantity="0"))
    assert sorted(r["column"] for r in rejects) == ["cmo_id", "product_code", "quantity"]
    assert {r["line"] for r in rejects} == {2}


def test_a_product_code_in_scientific_notation_is_rejected_with_the_text_format_hint() -> None:
    (reject,) = _rejects(SerialPoolFile, rows(product_code="1.12233E+13", serial="A"))
    assert reject["column"] == "product_code" and reject["value"] == "1.12233E+13"
    assert "scientific notation" in reject["message"]
    assert "format the column as text" in reject["message"]


def test_a_13_digit_product_code_is_rejected_as_a_lost_leading_zero() -> None:
    (reject,) = _rejects(
        AssignmentsFile, rows(cmo_id="C1", product_code="1122334455667", quantity="1")
    )
    assert "leading zero" in reject["message"]
    assert "format the column as text" in reject["message"]


@pytest.mark.parametrize("model", [ProductsFile, SerialPoolFile, SerialGenerateFile, ExportsFile])
def test_the_spreadsheet_hint_is_given_for_every_file_with_a_product_code(model: Any) -> None:
    frame = rows(
        **{c: "1.12233E+13" if c == "product_code" else _ok_value(c) for c in _required(model)}
    )
    rejects = _rejects(model, frame)
    assert [r["column"] for r in rejects] == ["product_code"]
    assert "format the column as text" in rejects[0]["message"]


def _required(model: Any) -> list[str]:
    from schemas.base import model_columns

    return [c for c, need in model_columns(model).items() if need == "required"]


def _ok_value(column: str) -> str:
    return {"quantity": "1", "serial": "A1", "product_name": "Demo", "cmo_id": "C1"}[column]


def test_a_gtin_with_a_wrong_check_digit_is_rejected_without_the_spreadsheet_hint() -> None:
    (reject,) = _rejects(ProductsFile, rows(product_code="11223344556677", product_name="Demo"))
    assert reject["rule"] == "gtin14"
    assert "check digit" in reject["message"]
    assert "spreadsheet" not in reject["message"]


@pytest.mark.parametrize("value", ["C1", "cmo-01.de_x", "9LIVES", "A" * 35])
def test_valid_cmo_ids(value: str) -> None:
    assert _rejects(CmosFile, rows(cmo_id=value)) == []


@pytest.mark.parametrize("value", ["-C1", ".C1", "_C1", "C 1", "C/1", "..", "A" * 36, "Ä1"])
def test_cmo_id_must_be_1_to_35_safe_characters_starting_with_a_letter_or_digit(
    value: str,
) -> None:
    (reject,) = _rejects(CmosFile, rows(cmo_id=value))
    assert reject["column"] == "cmo_id" and reject["rule"] == "cmo_id"
    assert reject["value"] == value


@pytest.mark.parametrize(
    ("value", "ok"),
    [("R-1", True), ("r" * 64, True), ("r" * 65, False), ("../x", False), ("a b", False)],
)
def test_request_id_must_be_1_to_64_safe_characters(value: str, ok: bool) -> None:
    frame = rows(request_id=value, cmo_id="C1", product_code=DEMO, quantity="1")
    rejects = _rejects(PartnerRequestsFile, frame)
    assert (rejects == []) is ok
    if not ok:
        assert rejects[0]["column"] == "request_id"


@pytest.mark.parametrize(
    "value",
    [
        "1234567.00012.0",
        "123456.789012.0",
        "1234567.00012.AB-1/x",
        "123456789012..0",  # a 12-digit company prefix leaves an empty location reference
    ],
)
def test_valid_sglns(value: str) -> None:
    assert _rejects(CmosFile, rows(cmo_id="C1", sgln=value)) == []


@pytest.mark.parametrize(
    "value",
    [
        "1234567.0001.0",  # 11 digits
        "1234567.000123.0",  # 13 digits
        "123456700012.0",  # no separator between prefix and reference
        "1234567.00012",  # no extension
        "1234567.00012.",  # empty extension
        "1234567.00012.A B",  # not an AI(21) character
        "1234567.00012." + "X" * 21,  # extension too long
        "12345a7.00012.0",
        "..0",
    ],
)
def test_sgln_is_prefix_dot_reference_dot_extension_with_12_digits(value: str) -> None:
    (reject,) = _rejects(CmosFile, rows(cmo_id="C1", sgln=value))
    assert reject["column"] == "sgln" and reject["value"] == value


@pytest.mark.parametrize(
    "word", ["Y", "y", "N", "n", "YES", "yes", "No", "TRUE", "true", "False", "1", "0"]
)
def test_booleans_accept_every_spelling(word: str) -> None:
    frame = rows(cmo_id="C1", product_code=DEMO, quantity="1", allow_already_exported=word)
    assert _rejects(ExportsFile, frame) == []


@pytest.mark.parametrize("word", ["J", "ja", "2", "yes please"])
def test_other_boolean_words_are_rejected(word: str) -> None:
    frame = rows(cmo_id="C1", product_code=DEMO, quantity="1", allow_already_exported=word)
    (reject,) = _rejects(ExportsFile, frame)
    assert reject["column"] == "allow_already_exported" and reject["rule"] == "boolean"


@pytest.mark.parametrize("model", [SerialGenerateFile, AssignmentsFile, ExportsFile])
@pytest.mark.parametrize("quantity", ["0", "-1", "1.5", "ALL", "ten"])
def test_quantity_must_be_a_positive_whole_number(model: Any, quantity: str) -> None:
    frame = rows(cmo_id="C1", product_code=DEMO, quantity=quantity).select(
        [*_required(model), "_line"]
    )
    (reject,) = _rejects(model, frame)
    assert reject["column"] == "quantity" and reject["value"] == quantity


@pytest.mark.parametrize(
    "model",
    [SerialGenerateFile, AssignmentsFile, ExportsFile, PartnerRequestsFile, SerialReturnsFile],
)
def test_a_quantity_beyond_18_digits_is_rejected_saying_the_limit(model: Any) -> None:
    """A 19-digit quantity is a whole number: the message must name the limit it breaks, not
    call it 'not a positive whole number'."""
    frame = rows(request_id="R1", cmo_id="C1", product_code=DEMO, quantity="9" * 19).select(
        [*_required(model), "_line"]
    )
    (reject,) = _rejects(model, frame)
    assert reject["column"] == "quantity" and "at most 18 digits" in reject["message"]


@pytest.mark.parametrize(
    ("model", "column"),
    [("OrdersFile", "quantity"), ("ReceiptsFile", "quantity"), ("ContractLinesFile", "line_no")],
)
def test_a_contract_number_beyond_18_digits_is_rejected_saying_the_limit(
    model: str, column: str
) -> None:
    import schemas.contracts as contracts

    frame = pl.DataFrame({column: ["9" * 19], "_line": [2]})
    (reject,) = [r for r in _rejects(getattr(contracts, model), frame) if r["column"] == column]
    assert reject["rule"] == "positive_int" and "at most 18 digits" in reject["message"]


@pytest.mark.parametrize("quantity", ["ALL", "all", "All", "5"])
def test_returns_take_a_positive_quantity_or_all(quantity: str) -> None:
    assert (
        _rejects(SerialReturnsFile, rows(cmo_id="C1", product_code=DEMO, quantity=quantity)) == []
    )


def test_returns_refuse_zero() -> None:
    (reject,) = _rejects(SerialReturnsFile, rows(cmo_id="C1", product_code=DEMO, quantity="0"))
    assert reject["column"] == "quantity"


@pytest.mark.parametrize(
    ("column", "value"),
    [("product_name", "x" * 101), ("product_code", "1122334455667A")],
)
def test_product_rows_are_checked(column: str, value: str) -> None:
    values = {"product_code": DEMO, "product_name": "Demo", column: value}
    (reject,) = _rejects(ProductsFile, rows(**values))
    assert reject["column"] == column


def test_cmo_rows_check_action_name_length_and_country() -> None:
    frame = rows(
        cmo_id=["C1", "C2", "C3", "C4"],
        action=["purge", None, "DELETE", None],
        cmo_name=["A", "x" * 81, None, "B"],
        country=["DE", "de", None, "Germany"],
    )
    rejects = _rejects(CmosFile, frame)
    assert [(r["line"], r["column"]) for r in rejects] == [
        (2, "action"),
        (3, "cmo_name"),
        (5, "country"),
    ]


def test_a_country_must_be_an_iso_3166_alpha_2_code() -> None:
    """§4.2: the codes come from pycountry (ISO 3166-1), not from a list typed in here."""
    import pycountry

    from schemas.checks import iso_countries

    assert iso_countries() == sorted(c.alpha_2 for c in pycountry.countries)
    frame = rows(cmo_id=["C1", "C2", "C3", "C4"], country=["gb", "UK", "XK", "SS"])
    assert [(r["line"], r["value"]) for r in _rejects(CmosFile, frame)] == [(3, "UK"), (4, "XK")]


def test_partnership_rows_check_event_email_payment_model_and_time() -> None:
    frame = rows(
        cmo_id="C1",
        event=["invite", "marry", "accept", "invite", "accept"],
        contact_email=["ops@cmo.example", None, None, "not-an-address", None],
        payment_model=[None, None, "free", None, "Partner"],
        event_time=["2024-05-01T10:00:00", None, "yesterday", None, "2024-05-01"],
    )
    rejects = _rejects(PartnershipsFile, frame)
    assert sorted((r["line"], r["column"]) for r in rejects) == [
        (3, "event"),
        (4, "event_time"),
        (4, "payment_model"),
        (5, "contact_email"),
    ]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2024-05-01T10:00:00", True),
        ("2024-05-01 23:59:60Z", True),
        ("2024-05-01T10:00:00.123+02:00", True),
        ("2024-02-29T00:00", True),
        ("2026-02-30T10:00:00", False),  # no such day
        ("2026-13-01", False),
        ("2026-01-01T24:00:00", False),
        ("2026-01-01T25:61:00", False),
        ("2026-01-01T10:00:00+25:00", False),
    ],
)
def test_an_event_time_is_a_real_iso_8601_date_time(value: str, valid: bool) -> None:
    frame = rows(cmo_id="C1", event="invite", event_time=value)
    assert (_rejects(PartnershipsFile, frame) == []) is valid


@pytest.mark.parametrize("model", ALL_MODELS)
def test_every_model_keeps_codes_as_strings(model: Any) -> None:
    schema = model.to_schema()
    assert all(str(col.dtype) in ("String", "Utf8") for col in schema.columns.values())
