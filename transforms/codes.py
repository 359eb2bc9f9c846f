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


# --------------------------------------------------------------------------- stored serials
# How the pool stores a serial (issue 17): a serial written as the decimal form of a
# number — digits only, at most 18, no leading zero ('0' itself is one) — is stored as
# that number (`num`, a BIGINT: a few bytes, compared and hashed as an integer); any
# other serial as its text (`txt`).  The two forms never meet (a text serial is never
# such a decimal form), so a serial is equal to another exactly when their (num, txt)
# are, NULLs compared as values (`IS NOT DISTINCT FROM`), and it reads back as
# `coalesce(txt, num::VARCHAR)`: the same string.
SERIAL_NUM_DIGITS = 18
_SERIAL_NUM_SQL_PATTERN = f"0|[1-9][0-9]{{0,{SERIAL_NUM_DIGITS - 1}}}"


def serial_num(serial: pl.Expr) -> pl.Expr:
    """The number a serial is stored as, or null when it is stored as text.

    Polars' cast reads ASCII digits after an optional sign, nothing else (no space,
    exponent, separator or other script; a property test holds it to the SQL form's
    pattern): what it reads is the plain decimal form unless a sign or a leading zero
    comes first."""
    num = serial.cast(pl.Int64, strict=False)
    size = serial.str.len_bytes()
    plain = (
        (size <= SERIAL_NUM_DIGITS)
        & ~serial.str.starts_with("+")
        & ~serial.str.starts_with("-")
        & ((size == 1) | ~serial.str.starts_with("0"))
    )
    return pl.when(plain).then(num)


def serial_parts(frame: pl.DataFrame, column: str = "serial") -> pl.DataFrame:
    """`frame` with its serial replaced by the stored pair `num`, `txt` (same place)."""
    num = serial_num(pl.col(column))
    return frame.with_columns(
        num.alias("num"), pl.when(num.is_null()).then(pl.col(column)).alias("txt")
    ).select(*(c for c in frame.columns if c != column), "num", "txt")


def serial_num_sql(serial: str) -> str:
    """`serial_num` in DuckDB's SQL, of the SQL expression `serial`."""
    return (
        f"CASE WHEN regexp_full_match({serial}, '{_SERIAL_NUM_SQL_PATTERN}') "
        f"THEN CAST({serial} AS BIGINT) END"
    )


def serial_txt_sql(serial: str) -> str:
    """The text a serial is stored as (NULL when stored as a number), in SQL."""
    return (
        f"CASE WHEN NOT regexp_full_match({serial}, '{_SERIAL_NUM_SQL_PATTERN}') THEN {serial} END"
    )


def serial_sql(alias: str) -> str:
    """The serial, as a string, of the pool row `alias` (SQL)."""
    return f"coalesce({alias}.txt, CAST({alias}.num AS VARCHAR))"


def same_serial_sql(pool: str, num: str, txt: str) -> str:
    """The join condition: pool row `pool` holds the serial stored as (`num`, `txt`)."""
    return f"{pool}.num IS NOT DISTINCT FROM {num} AND {pool}.txt IS NOT DISTINCT FROM {txt}"
