"""Reading back what a run wrote into its report folder (SPEC §10): the run summary and the
rejects counted by file and rule, for the Prefect artifacts of §11."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl


def read_summary(folder: Path) -> dict[str, Any] | None:
    """run_summary.json of a report folder, or None when it was not written."""
    try:
        data = json.loads((folder / "run_summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def rejects_by_file_and_rule(folder: Path) -> list[dict[str, Any]]:
    """rejects.csv counted by file and rule: [{"file", "rule", "rows"}], most rows first."""
    path = folder / "rejects.csv"
    if not path.exists():
        return []
    frame = pl.read_csv(path, infer_schema=False, columns=["file", "rule"])
    if frame.is_empty():
        return []
    counted = (
        frame.group_by("file", "rule")
        .agg(pl.len().alias("rows"))
        .sort(["rows", "file", "rule"], descending=[True, False, False])
    )
    return counted.to_dicts()
