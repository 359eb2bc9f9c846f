"""Rejected rows: one frame shape shared by every rule (SPEC §3.1, `rejects.csv`).

A reject frame has the columns of `REJECT_SCHEMA`: the file line of the row
(header = line 1, first data row = line 2), the column, the offending value, a
short rule name and a sentence a person can act on.  The file name is added by
the flow when the run's `rejects.csv` is assembled.
"""

from __future__ import annotations

from typing import Any

import polars as pl

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "line": pl.Int64(),
    "column": pl.String(),
    "value": pl.String(),
    "rule": pl.String(),
    "message": pl.String(),
}

LINE = "_line"
"""Name of the column that every parsed inbox frame carries: the row's file line."""


def empty_rejects() -> pl.DataFrame:
    """A reject frame without rows."""
    return pl.DataFrame(schema=REJECT_SCHEMA)


def reject_where(
    rows: pl.DataFrame,
    condition: pl.Expr,
    *,
    column: str,
    rule: str,
    message: str | pl.Expr,
    value: pl.Expr | None = None,
) -> pl.DataFrame:
    """Reject every row of `rows` where `condition` holds.

    `rows` must carry the `_line` column.  `message` may be an expression so the
    sentence can quote values of the row (e.g. the available count).
    """
    msg = pl.lit(message) if isinstance(message, str) else message
    val = (
        value
        if value is not None
        else (pl.col(column).cast(pl.String) if column in rows.columns else pl.lit(None, pl.String))
    )
    return rows.filter(condition).select(
        pl.col(LINE).cast(pl.Int64).alias("line"),
        pl.lit(column, pl.String).alias("column"),
        val.cast(pl.String).alias("value"),
        pl.lit(rule, pl.String).alias("rule"),
        msg.cast(pl.String).alias("message"),
    )


def concat_rejects(*frames: pl.DataFrame) -> pl.DataFrame:
    """Concatenate reject frames, ordered by line (stable for equal lines)."""
    parts = [f.select(list(REJECT_SCHEMA)).cast(REJECT_SCHEMA) for f in frames if f.height]  # type: ignore[arg-type]
    if not parts:
        return empty_rejects()
    return pl.concat(parts, how="vertical").sort("line", maintain_order=True)


def without_rejected(rows: pl.DataFrame, rejects: pl.DataFrame) -> pl.DataFrame:
    """The rows of `rows` whose line is not in `rejects`, in file order."""
    if rejects.height == 0:
        return rows
    bad = rejects.select(pl.col("line").alias(LINE)).unique()
    return rows.join(bad, on=LINE, how="anti", maintain_order="left")


class RejectCollector:
    """Rejects gathered row by row, for rules that walk a small file in order."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, line: int, column: str, value: Any, rule: str, message: str) -> None:
        self.rows.append(
            {
                "line": line,
                "column": column,
                "value": None if value is None else str(value),
                "rule": rule,
                "message": message,
            }
        )

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=REJECT_SCHEMA)
