"""`cmi validate` (SPEC §1): judge the inbox exactly as a run would now, and change nothing.

The stages are the run's own (`flows.pipeline.scan` and `apply_stage`, the very
functions a night calls), over a `Run` marked `dry_run` whose store is a read-only
view of the state with an in-memory overlay (`connectors.state_view`): each file's
effects are committed to the overlay, where the files after it see them, as they
would in the night; no inbox file moves and no export or answer is written.  The
only output is the report: `rejects.csv` and `run_summary.json` (outcome
`would_apply` for a file the run would apply).

Before a file kind is judged, the tables its rules write are copied from the store
into the overlay (`WRITES`; the others stay views of the store) — but for the tables
that only grow (shown with an in-memory table of what is added) and the packaging
hierarchy (copied one sender at a time): `connectors.state_view`.  A kind writing a
table missing from its entry fails loudly (DuckDB refuses to write a view: the file
gets an unexpected error, exit 1), never silently; the tests run every kind.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from connectors import outbox as outbox_io
from connectors.state_view import StateView, open_state_view
from flows.pipeline import STAGES, _free_run_id, apply_stage, scan
from flows.reporting import summary
from flows.run_state import Run, RunPaths, timed
from transforms import contract_reports, reports
from transforms.context import Config, RunContext
from transforms.rejects import REJECT_SCHEMA

# the state tables the rules of each file kind write (see the module docstring)
EVERY_FILE = ("processed_files", "meta", "report_rows")
_SERIAL_LOAD = ("pool", "pool_loads", "serial_products", "serial_runs")
_CONTRACT = ("contracts", "contract_lines", "contract_log")
_OUTBOX = ("serial_runs", "outbox_files", "outbox_ranges")
WRITES: dict[str, tuple[str, ...]] = {
    "products": ("products",),
    "cmos": ("cmos", "cmo_products", "serial_runs"),
    "partnerships": ("cmos",),
    "serial_pool": _SERIAL_LOAD,
    "serial_generate": _SERIAL_LOAD,
    "assignments": ("serial_runs",),
    "serial_returns": ("serial_runs",),
    "contract_keys": ("contract_keys",),
    "contracts": _CONTRACT,
    "contract_lines": _CONTRACT,
    "receipts": (*_CONTRACT, "contract_receptions"),
    "orders": (*_CONTRACT, "contract_order_lines", "contract_allocations"),
    "partner_requests": _OUTBOX,
    "shipping": ("serial_runs", "shipping_aggregation", "shipping_parents",
                 "shipping_exception_log"),
    "exports": _OUTBOX,
}  # fmt: skip


@dataclass
class Validation:
    """What `cmi validate` found: where its report is and the outline the command prints."""

    report_dir: Path
    files: list[dict[str, Any]]
    rows_rejected: int
    files_quarantined: int
    warnings: list[str]
    unexpected: list[str]
    materialised: list[str]

    @property
    def would_reject(self) -> bool:
        return self.rows_rejected > 0 or self.files_quarantined > 0


def _prepare(
    inbox: Path, state: Path, config: Config, as_of: dt.datetime, report_dir: Path
) -> tuple[Run, StateView]:
    started = time.perf_counter()
    store, view = open_state_view(state)
    try:
        paths = RunPaths(inbox, report_dir, state)
        run_id = _free_run_id(store, paths, as_of)
        run = Run(paths, config, as_of, store, RunContext(run_id, as_of, config),
                  dt.datetime.now(), dry_run=True)  # fmt: skip
        run.pool_sizes = reports.pool_sizes(store.con)
    except BaseException:
        store.close()
        raise
    timed(run, "prepare", started)
    return run, view


def _judge(run: Run, view: StateView) -> None:
    """The run's stages, each after copying the tables its kinds write into the overlay."""
    scan(run)
    assert run.scan is not None
    present = {f.kind for f in run.scan.files}
    for stage, kinds in STAGES:
        wanted = [k for k in kinds if k in present]
        if not wanted:
            continue
        started = time.perf_counter()
        view.materialise([*EVERY_FILE, *(t for k in wanted for t in WRITES[k])])
        timed(run, "overlay", started)
        apply_stage(run, stage)


def _write_report(run: Run, folder: Path) -> dict[str, Any]:
    con = run.store.con
    rejects = (
        pl.concat(run.rejects)
        if run.rejects
        else pl.DataFrame(schema={"file": pl.String, **REJECT_SCHEMA})
    )
    outbox_io.write_report(folder, "rejects.csv", rejects, reports.REJECTS_COLUMNS)
    invariants = reports.serial_invariants(con, reports.serial_balance_report(con), run.pool_sizes)
    invariants.update(contract_reports.contract_invariants(con))
    outline = summary(run, invariants, dt.datetime.now())
    for f in outline["files"]:
        if f["outcome"] == "applied":
            f["outcome"] = "would_apply"
    outbox_io.write_json(folder / "run_summary.json", outline)
    return outline


def validate_inbox(
    inbox: Path, state: Path, config: Config, as_of: dt.datetime, report_dir: Path | None
) -> Validation:
    """Judge every inbox file as `cmi run` would at `as_of`, against the current state,
    changing nothing; write `rejects.csv` and `run_summary.json` into `report_dir`
    (default: a new folder under the system's temporary folder)."""
    if report_dir is None:
        report_dir = Path(tempfile.mkdtemp(prefix="cmi-validate-"))
    report_dir.mkdir(parents=True, exist_ok=True)
    run, view = _prepare(inbox, state, config, as_of, report_dir)
    try:
        _judge(run, view)
        outline = _write_report(run, report_dir)
    finally:
        run.store.close()
    totals = outline["totals"]
    return Validation(
        report_dir=report_dir,
        files=outline["files"],
        rows_rejected=int(totals["rows_rejected"]),
        files_quarantined=int(totals["files_quarantined"]),
        warnings=list(run.warnings),
        unexpected=list(run.unexpected),
        materialised=list(view.materialised),
    )
