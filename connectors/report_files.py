"""The CSV reports of a run folder read back for the reports people look at (SPEC §10.1).

`report.html` and `report.xlsx` are made from the CSVs as written, so that every number
in them equals the CSVs' and every report of the folder has its sheet (one added later
too).  Cells come back as the CSV holds them, less the leading `'` the CSV writer puts
before text a spreadsheet would read as a formula (§10); quantities become integers,
dates dates, date-times date-times (`schemas.report_types`); everything else is text.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from schemas.report_types import DATES, DATETIMES, QUANTITIES, REPORT_ORDER

# what the CSV writer guards with a leading `'` (§10): = + - @ tab carriage return
_GUARDED = r"^'[=+\-@\t\r]"


def _typed(frame: pl.DataFrame) -> pl.DataFrame:
    exprs = []
    for name in frame.columns:
        col = pl.col(name)
        if name in QUANTITIES:
            exprs.append(col.cast(pl.Int64, strict=False))
        elif name in DATES:
            exprs.append(col.str.to_date("%Y-%m-%d", strict=False))
        elif name in DATETIMES:
            exprs.append(col.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us"))
        else:
            exprs.append(pl.when(col.str.contains(_GUARDED)).then(col.str.slice(1)).otherwise(col))
    typed = frame.select(exprs)
    # a cell that is not what its column should hold stays text, whole column (never lost)
    fallback = [
        name
        for name in frame.columns
        if (name in QUANTITIES or name in DATES or name in DATETIMES)
        and typed.get_column(name).null_count() != frame.get_column(name).null_count()
    ]
    return typed.with_columns(frame.get_column(n) for n in fallback) if fallback else typed


def read_report(path: Path) -> pl.DataFrame:
    """One report CSV: header and rows, typed as the module docstring says."""
    frame = pl.read_csv(path, infer_schema=False)
    return _typed(frame)


def _order(name: str) -> tuple[int, str]:
    return (REPORT_ORDER.index(name) if name in REPORT_ORDER else len(REPORT_ORDER), name)


def read_run_reports(folder: Path) -> dict[str, pl.DataFrame]:
    """Every `*.csv` of the run folder, by report name (file name without `.csv`), in the
    order of the §10 table."""
    names = sorted((p.stem for p in folder.glob("*.csv")), key=_order)
    return {name: read_report(folder / f"{name}.csv") for name in names}
