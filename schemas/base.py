"""Shared machinery of the data contracts: inbox columns are strings, rules are Pandera checks.

Every inbox file kind has a `pandera.polars.DataFrameModel` whose fields are the
file's columns (all `str`: codes never become numbers).  Conventions:

- `required()` — the column must be in the header and every row must give it
  (a missing cell is the rule `required`).
- `optional()` — the column may be left out of the header; an empty cell is "not
  given".  Columns that are "required for …" some rows are `optional()` here and
  their condition is a rule in `transforms/`.
- A check's `error` is `"<rule>|<sentence>"`; `{value}` in the sentence is
  replaced by the offending value.

`validate_rows` runs a model over a parsed file (a frame with the `_line`
column) and splits it into valid rows and a reject frame (`transforms.rejects`).
"""

from __future__ import annotations

from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.backends.polars.register import register_polars_backends
from pandera.errors import SchemaErrors

from schemas import checks
from transforms.codes import distinct_by_runs, product_code_message_expr
from transforms.rejects import LINE, REJECT_SCHEMA, empty_rejects, without_rejected

# Pandera registers its Polars backends on the first validation; doing it at import
# keeps that one-off cost (it imports much of pandera) out of the first file's time.
register_polars_backends()

_HEADER = "header"


def required(**kwargs: Any) -> Any:
    """A column that must be in the header and filled on every row."""
    return pa.Field(nullable=False, metadata={_HEADER: "required"}, **kwargs)


def optional(**kwargs: Any) -> Any:
    """A column that may be absent from the header or empty on a row."""
    return pa.Field(nullable=True, metadata={_HEADER: "optional"}, **kwargs)


def valid_where(data: Any, predicate: pl.Expr) -> pl.LazyFrame:
    """Body of a column check: `predicate` on the checked column, empty cells pass."""
    col = pl.col(data.key)
    return data.lazyframe.select(predicate.fill_null(False) | col.is_null())


def valid_where_distinct(data: Any, predicate: pl.Expr) -> pl.LazyFrame:
    """Like `valid_where`, computed once per distinct value: for costly checks of codes
    that repeat on many rows (a product code on every serial of a pool file)."""
    key = data.key
    col = pl.col(key)
    distinct = distinct_by_runs(data.lazyframe.select(col).collect().to_series()).to_frame()
    good = distinct.filter(predicate.fill_null(False)).get_column(key)
    if good.len() == distinct.drop_nulls().height:  # every value passes: no second scan
        return data.lazyframe.select(pl.repeat(True, pl.len()).alias(key))
    return data.lazyframe.select(col.is_in(good.implode()) | col.is_null())


def model_columns(model: type[pa.DataFrameModel]) -> dict[str, str]:
    """The file columns a model defines, with `required` / `optional` for the header."""
    schema = model.to_schema()
    out: dict[str, str] = {}
    for name, column in schema.columns.items():
        meta = column.metadata or {}
        out[name] = meta.get(_HEADER, "optional")
    return out


def header_problems(model: type[pa.DataFrameModel], header: list[str]) -> str | None:
    """Why a file with this (normalised) header is rejected whole, or None.

    A missing required column, a column the kind does not define, or a column
    given twice quarantines the file (SPEC §3.1).
    """
    columns = model_columns(model)
    seen: set[str] = set()
    for name in header:
        if name in seen:
            return f"column '{name}' appears twice in the header"
        seen.add(name)
    unknown = [h for h in header if h not in columns]
    if unknown:
        return (
            f"unknown column '{unknown[0]}' in the header: this file kind has the columns "
            + ", ".join(columns)
            + " (check the spelling)"
        )
    missing = [c for c, need in columns.items() if need == "required" and c not in seen]
    if missing:
        return f"required column '{missing[0]}' is missing from the header"
    return None


def complete_columns(model: type[pa.DataFrameModel], rows: pl.DataFrame) -> pl.DataFrame:
    """Add the optional columns that the header left out, as empty cells."""
    missing = [c for c in model_columns(model) if c not in rows.columns]
    if not missing:
        return rows
    return rows.with_columns([pl.lit(None, pl.String).alias(c) for c in missing])


def validate_rows(
    model: type[pa.DataFrameModel], rows: pl.DataFrame, *, gs1_text: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate every row against `model`; return (valid rows, rejects).

    Rows keep file order.  Every failing cell is reported (one reject per row,
    column and rule); a row with any failure is left out of the valid rows.
    `gs1_text`: the file is known to hold only GS1 characters (`checks.gs1_text`).
    """
    rows = complete_columns(model, rows)
    try:
        with checks.gs1_text(gs1_text):
            model.validate(rows, lazy=True)
        return rows, empty_rejects()
    except SchemaErrors as err:
        failures = err.failure_cases
    failures = failures.filter(pl.col("index").is_not_null())
    if failures.height == 0:
        return rows, empty_rejects()
    lines = rows.select(pl.col(LINE).cast(pl.Int64).alias("line")).with_row_index("index")
    check = pl.col("check").cast(pl.String)
    value = pl.col("failure_case").cast(pl.String)
    column = pl.col("column").fill_null("")
    custom = check.str.contains("|", literal=True)
    message_template = check.str.splitn("|", 2).struct.field("field_1")
    rejects = (
        failures.with_columns(pl.col("index").cast(pl.UInt32))
        .join(lines, on="index", how="left")
        .select(
            pl.col("line"),
            column.alias("column"),
            value.alias("value"),
            pl.when(check == "not_nullable")
            .then(pl.lit("required"))
            .when(custom)
            .then(check.str.splitn("|", 2).struct.field("field_0"))
            .otherwise(check)
            .alias("rule"),
            pl.when(check == "not_nullable")
            .then(column + pl.lit(" is required"))
            .when(check.str.starts_with("gtin14|"))
            .then(product_code_message_expr(value, column))
            .when(custom)
            .then(message_template.str.replace_all("{value}", value.fill_null(""), literal=True))
            .otherwise(column + pl.lit(" fails the check ") + check)
            .alias("message"),
        )
        .cast(REJECT_SCHEMA)  # type: ignore[arg-type]
        .unique(subset=["line", "column", "rule"], maintain_order=True)
        .sort("line", maintain_order=True)
    )
    return without_rejected(rows, rejects), rejects
