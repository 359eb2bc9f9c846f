"""Reusable column predicates for the file models (Polars expressions over one column)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from contextvars import ContextVar

import polars as pl

from transforms.codes import (
    CMO_ID_PATTERN,
    REQUEST_ID_PATTERN,
    SERIAL_PATTERN,
    SGLN_PATTERN,
    is_bool_expr,
    is_date_expr,
    is_gtin14_expr,
    is_positive_int_expr,
)


@functools.cache
def iso_countries() -> list[str]:
    """ISO 3166-1 alpha-2 country codes, from pycountry's copy of the ISO tables (loaded on
    first use, not at import)."""
    import pycountry

    return sorted(c.alpha_2 for c in pycountry.countries)


@functools.cache
def iso_currencies() -> list[str]:
    """ISO 4217 currency codes (alphabetic), from pycountry."""
    import pycountry

    return sorted(c.alpha_3 for c in pycountry.currencies)


EMAIL_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)+$"
# ISO 8601 date-times (§3.1): a calendar date, then optionally a time of day (hh:mm, or
# hh:mm:ss with a decimal fraction after `.` or `,`) and a UTC designator or offset (±hh,
# ±hh:mm or ±hhmm), in the extended format (2024-05-01T07:00:00; a space for the T as RFC
# 3339 allows) or the basic format (20240501T070000, 20240501T0700Z), each format
# throughout: ISO 8601 does not mix them.  Hours 00-23, minutes 00-59, seconds 00-59 (a
# leap second 60 too), offsets up to 23:59.
_HOUR, _MINUTE, _SECOND = "([01][0-9]|2[0-3])", "[0-5][0-9]", "([0-5][0-9]|60)([.,][0-9]+)?"
DATETIME_PATTERN = (
    rf"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}([T ]{_HOUR}:{_MINUTE}(:{_SECOND})?"
    rf"(Z|[+\-]{_HOUR}(:?{_MINUTE})?)?)?$"
)
DATETIME_BASIC_PATTERN = (
    rf"^[0-9]{{8}}(T{_HOUR}{_MINUTE}({_SECOND})?(Z|[+\-]{_HOUR}({_MINUTE})?)?)?$"
)


def gtin14(col: pl.Expr) -> pl.Expr:
    return is_gtin14_expr(col)


def cmo_id(col: pl.Expr) -> pl.Expr:
    return col.str.contains(CMO_ID_PATTERN)


def request_id(col: pl.Expr) -> pl.Expr:
    return col.str.contains(REQUEST_ID_PATTERN)


# True while a file is validated whose every character is of the GS1 character set 82
# or a line end (`connectors.csv_reader.FileScan.gs1_text`, found by the hashing read):
# a serial of such a file is valid when its length is.
_GS1_TEXT: ContextVar[bool] = ContextVar("gs1_text", default=False)


@contextlib.contextmanager
def gs1_text(known: bool) -> Iterator[None]:
    """Validate, inside this block, knowing (or not) that the file is GS1 text."""
    token = _GS1_TEXT.set(known)
    try:
        yield
    finally:
        _GS1_TEXT.reset(token)


def serial(col: pl.Expr) -> pl.Expr:
    """1-20 characters of the GS1 character set 82 (AI 21)."""
    if _GS1_TEXT.get():
        return col.str.len_bytes().is_between(1, 20)
    return col.str.contains(SERIAL_PATTERN)


def positive_int(col: pl.Expr) -> pl.Expr:
    return is_positive_int_expr(col)


def boolean(col: pl.Expr) -> pl.Expr:
    return is_bool_expr(col)


def one_of(col: pl.Expr, *words: str) -> pl.Expr:
    return col.str.to_lowercase().is_in(list(words))


def max_len(col: pl.Expr, n: int) -> pl.Expr:
    return col.str.len_chars() <= n


def country(col: pl.Expr) -> pl.Expr:
    """An ISO 3166-1 alpha-2 code, any case (§4.2)."""
    return col.str.to_uppercase().is_in(iso_countries())


def currency(col: pl.Expr) -> pl.Expr:
    """An ISO 4217 currency code, any case (§7.1)."""
    return col.str.to_uppercase().is_in(iso_currencies())


def email(col: pl.Expr) -> pl.Expr:
    return col.str.contains(EMAIL_PATTERN) & (col.str.len_chars() <= 254)


def sgln(col: pl.Expr) -> pl.Expr:
    """`<company prefix>.<location reference>.<extension or 0>`: prefix and reference are
    digits, together 12 (§4.2; the spec sets no other bound on the prefix, and the SGLNs
    of shipping files are read by the same rule: `transforms.epc`)."""
    parts = col.str.extract_groups(SGLN_PATTERN)
    prefix = parts.struct.field("1")
    ref = parts.struct.field("2")
    return col.str.contains(SGLN_PATTERN) & ((prefix.str.len_chars() + ref.str.len_chars()) == 12)


def iso_datetime(col: pl.Expr) -> pl.Expr:
    """ISO 8601 (§3.1), extended or basic format: a real calendar date, then optionally a
    time of day and an offset (`DATETIME_PATTERN`, `DATETIME_BASIC_PATTERN`)."""
    basic = col.str.contains(DATETIME_BASIC_PATTERN)
    date = (
        pl.when(basic)
        .then(pl.concat_str([col.str.slice(0, 4), col.str.slice(4, 2), col.str.slice(6, 2)],
                            separator="-"))
        .otherwise(col.str.slice(0, 10))
    )  # fmt: skip
    return (basic | col.str.contains(DATETIME_PATTERN)) & is_date_expr(date)
