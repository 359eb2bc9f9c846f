"""Codes: GS1 check digits, GTIN-14, mangled product codes, booleans, dates (SPEC §3.1, §4.1, §5)."""

from __future__ import annotations

import re

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.codes import (
    CMO_ID_PATTERN,
    GS1_CHARSET_82,
    REQUEST_ID_PATTERN,
    SERIAL_PATTERN,
    distinct_by_runs,
    gs1_check_digit,
    is_bool_expr,
    is_date_expr,
    is_gtin14,
    is_gtin14_expr,
    is_positive_int_expr,
    mangled_code_hint,
    parse_bool,
    parse_datetime,
    product_code_message_expr,
)


def test_gs1_check_digit_of_the_demo_product_is_5_not_7() -> None:
    """SPEC §4.1: the guide's demo code 11223344556677 is invalid; 11223344556675 is valid."""
    assert gs1_check_digit("1122334455667") == "5"
    assert is_gtin14("11223344556675")
    assert not is_gtin14("11223344556677")


@pytest.mark.parametrize(
    ("body", "digit"),
    [
        ("0000000000001", "7"),
        ("0000000000002", "4"),
        ("0400638133393", "1"),
        ("1061414100041", "5"),
    ],
)
def test_gs1_check_digit_matches_known_codes(body: str, digit: str) -> None:
    assert gs1_check_digit(body) == digit


@pytest.mark.parametrize(
    "code",
    ["1122334455667", "112233445566750", "1122334455667A", "", None, "１１223344556675"],
)
def test_gtin14_requires_exactly_14_ascii_digits(code: str | None) -> None:
    assert not is_gtin14(code)


def test_vectorised_gtin14_agrees_with_the_scalar_check() -> None:
    codes = ["11223344556675", "11223344556677", "00000000000017", "1.12233E+13", "123", None]
    got = pl.DataFrame({"c": codes}).select(is_gtin14_expr(pl.col("c"))).to_series().to_list()
    assert got == [True, False, True, False, False, None]


def test_mangled_code_hint_explains_scientific_notation_and_a_lost_leading_zero() -> None:
    sci = mangled_code_hint("1.12233E+13")
    assert sci is not None and "scientific notation" in sci and "format the column as text" in sci
    lost = mangled_code_hint("0000000000017")  # 13 digits
    assert lost is not None and "leading zero" in lost and "format the column as text" in lost
    assert mangled_code_hint("11223344556675") is None
    assert mangled_code_hint(None) is None


def test_product_code_message_gives_the_spreadsheet_hint_only_where_it_applies() -> None:
    frame = pl.DataFrame({"c": ["1.12233E+13", "1234567890123", "11223344556677"]})
    msgs = frame.select(product_code_message_expr(pl.col("c"))).to_series().to_list()
    assert "scientific notation" in msgs[0] and "as text" in msgs[0]
    assert "leading zero of '01234567890123'" in msgs[1] and "as text" in msgs[1]
    assert "not a GTIN-14" in msgs[2] and "as text" not in msgs[2]


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("Y", True), ("y", True), ("YES", True), ("Yes", True), ("TRUE", True), ("true", True),
        ("1", True), ("N", False), ("n", False), ("NO", False), ("no", False), ("FALSE", False),
        ("False", False), ("0", False),
    ],
)  # fmt: skip
def test_booleans_accept_every_spelling_in_any_case(word: str, value: bool) -> None:
    assert parse_bool(word) is value
    assert pl.select(is_bool_expr(pl.lit(word))).item() is True


@pytest.mark.parametrize("word", ["J", "oui", "2", "T", "yess"])
def test_other_boolean_words_are_refused(word: str) -> None:
    with pytest.raises(ValueError):
        parse_bool(word)
    assert pl.select(is_bool_expr(pl.lit(word))).item() is False


def test_empty_boolean_means_not_given() -> None:
    assert parse_bool(None) is None
    assert parse_bool("") is None


def test_dates_must_be_yyyy_mm_dd_and_real() -> None:
    frame = pl.DataFrame({"d": ["2024-02-29", "2023-02-29", "2024-2-1", "01.02.2024"]})
    assert frame.select(is_date_expr(pl.col("d"))).to_series().to_list() == [
        True,
        False,
        False,
        False,
    ]


def test_datetimes_are_iso_8601_with_z_accepted() -> None:
    assert parse_datetime("2024-05-17T10:00:00").hour == 10
    assert parse_datetime("2024-05-17T10:00:00Z").utcoffset() is not None


def test_positive_int_refuses_zero_sign_decimals_and_text() -> None:
    frame = pl.DataFrame({"q": ["1", "1100", "0", "-3", "+3", "1.0", "1e3", "ten"]})
    got = frame.select(is_positive_int_expr(pl.col("q"))).to_series().to_list()
    assert got == [True, True, False, False, False, False, False, False]


def test_serial_pattern_is_gs1_charset_82_of_1_to_20_characters() -> None:
    assert len(GS1_CHARSET_82) == 82
    assert re.match(SERIAL_PATTERN, GS1_CHARSET_82[:20])
    assert re.match(SERIAL_PATTERN, 'A,"B')
    assert not re.match(SERIAL_PATTERN, "A" * 21)
    for bad in ("A B", "A#B", "A$", "É", "A~", ""):
        assert not re.match(SERIAL_PATTERN, bad), bad


def test_cmo_id_and_request_id_patterns_limit_length_and_first_character() -> None:
    assert re.match(CMO_ID_PATTERN, "A" * 35)
    assert not re.match(CMO_ID_PATTERN, "A" * 36)
    assert re.match(REQUEST_ID_PATTERN, "r" * 64)
    assert not re.match(REQUEST_ID_PATTERN, "r" * 65)
    for pattern in (CMO_ID_PATTERN, REQUEST_ID_PATTERN):
        assert re.match(pattern, "9a.b_c-d")
        for bad in (".hidden", "-x", "_x", "a/b", "a b", "..", ""):
            assert not re.match(pattern, bad), bad


@given(st.lists(st.sampled_from(["A", "B", "C", None]), max_size=30), st.integers(1, 4))
def test_distinct_values_from_runs_are_the_distinct_values_in_first_order(
    values: list[str | None], pieces: int
) -> None:
    """Blocks or shuffled, nulls, a column in several pieces: as `unique` in first order."""
    cut = len(values) // pieces or 1
    series = pl.concat(
        [pl.Series("c", values[i : i + cut], pl.String) for i in range(0, len(values), cut)]
        or [pl.Series("c", [], pl.String)],
        rechunk=False,
    )
    got = distinct_by_runs(series)
    assert got.to_list() == series.unique(maintain_order=True).to_list()
    assert got.name == "c"
