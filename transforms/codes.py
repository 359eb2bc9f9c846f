"""Codes: GS1 check digits, the GS1 character sets, booleans, dates (SPEC §3.1, §4, §5).

Codes are strings everywhere; these helpers never turn them into numbers except
digit by digit to compute a check digit.
"""

from __future__ import annotations

import datetime as dt
import re

import polars as pl

# GS1 AI(21) character set 82 (SPEC §5).
GS1_CHARSET_82 = (
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
SERIAL_PATTERN = r"^[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}$"
CMO_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,34}$"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"
SCIENTIFIC_PATTERN = r"^[0-9]+([.,][0-9]+)?[eE][+\-]?[0-9]+$"
# The location reference is empty when the company prefix has 12 digits (GS1 TDS).
SGLN_PATTERN = r"^([0-9]+)\.([0-9]*)\.(0|[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20})$"

TRUE_WORDS = {"y", "yes", "true", "1"}
FALSE_WORDS = {"n", "no", "false", "0"}


def distinct_by_runs(values: pl.Series) -> pl.Series:
    """The distinct values of `values`, in order of first appearance, found from its runs
    of equal values: cheap for a code listed in blocks (a product code on every serial
    of a pool file), no dearer than `unique` otherwise."""
    return values.rle().struct.field("value").unique(maintain_order=True).alias(values.name)


def gs1_check_digit(body: str) -> str:
    """The GS1 mod-10 check digit of `body` (all digits, any length)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        total += int(ch) * (3 if i % 2 == 0 else 1)
    return str((10 - total % 10) % 10)


def is_gtin14(code: str | None) -> bool:
    """14 digits with a valid GS1 check digit."""
    return (
        code is not None
        and len(code) == 14
        and code.isascii()
        and code.isdigit()
        and gs1_check_digit(code[:13]) == code[13]
    )


def gs1_check_digit_expr(body: pl.Expr, length: int) -> pl.Expr:
    """Vectorised GS1 check digit of a column of `length`-digit strings."""
    total = pl.lit(0, pl.Int64)
    for i in range(length):
        weight = 3 if (length - 1 - i) % 2 == 0 else 1
        total = total + body.str.slice(i, 1).cast(pl.Int64, strict=False) * weight
    return ((10 - total % 10) % 10).cast(pl.String)


def is_gtin14_expr(code: pl.Expr) -> pl.Expr:
    """Vectorised `is_gtin14` (null stays null)."""
    shape = code.str.contains(r"^[0-9]{14}$")
    return shape & (gs1_check_digit_expr(code.str.slice(0, 13), 13) == code.str.slice(13, 1))


def mangled_code_hint(code: str | None, name: str = "product_code") -> str | None:
    """A sentence when `code` looks like a product code that a spreadsheet mangled."""
    if code is None:
        return None
    if re.match(SCIENTIFIC_PATTERN, code):
        return (
            f"{name} '{code}' is in scientific notation: a spreadsheet turned the code "
            "into a number; format the column as text before saving the file"
        )
    if len(code) == 13 and code.isdigit():
        return (
            f"{name} '{code}' has 13 digits: a spreadsheet probably dropped the leading "
            f"zero of '0{code}'; format the column as text before saving the file"
        )
    return None


def product_code_message_expr(code: pl.Expr, column: str | pl.Expr = "product_code") -> pl.Expr:
    """The rejection sentence for an invalid product code, with the spreadsheet hint."""
    name = pl.lit(column) if isinstance(column, str) else column
    return (
        pl.when(code.str.contains(SCIENTIFIC_PATTERN))
        .then(
            (name + pl.lit(" '"))
            + code
            + pl.lit(
                "' is in scientific notation: a spreadsheet turned the code into a number; "
                "format the column as text before saving the file"
            )
        )
        .when(code.str.contains(r"^[0-9]{13}$"))
        .then(
            (name + pl.lit(" '"))
            + code
            + pl.lit("' has 13 digits: a spreadsheet probably dropped the leading zero of '0")
            + code
            + pl.lit("'; format the column as text before saving the file")
        )
        .otherwise(
            (name + pl.lit(" '"))
            + code
            + pl.lit("' is not a GTIN-14 (14 digits with a valid GS1 check digit)")
        )
    )


def parse_bool(value: str | None) -> bool | None:
    """Y/N, YES/NO, TRUE/FALSE, 1/0 in any case; None when empty; ValueError otherwise."""
    if value is None or value == "":
        return None
    low = value.strip().lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    raise ValueError(value)


def bool_expr(col: pl.Expr) -> pl.Expr:
    """Vectorised boolean parse; invalid words become null (validate first)."""
    low = col.str.to_lowercase()
    return (
        pl.when(low.is_in(list(TRUE_WORDS)))
        .then(True)
        .when(low.is_in(list(FALSE_WORDS)))
        .then(False)
    )


def is_bool_expr(col: pl.Expr) -> pl.Expr:
    return col.str.to_lowercase().is_in(list(TRUE_WORDS | FALSE_WORDS))


def is_date_expr(col: pl.Expr) -> pl.Expr:
    """`YYYY-MM-DD` and a real calendar date."""
    return (
        col.str.contains(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
        & col.str.strptime(pl.Date, "%Y-%m-%d", strict=False).is_not_null()
    )


def date_expr(col: pl.Expr) -> pl.Expr:
    return col.str.strptime(pl.Date, "%Y-%m-%d", strict=False)


def parse_datetime(value: str) -> dt.datetime:
    """ISO 8601 date-time (a trailing Z is accepted)."""
    v = value.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    return dt.datetime.fromisoformat(v)


def is_positive_int_expr(col: pl.Expr) -> pl.Expr:
    """A positive whole number written in digits (no sign, no decimals, at most 18 digits)."""
    return col.str.contains(r"^[0-9]{1,18}$") & (col.cast(pl.Int64, strict=False) > 0)
