"""What one nightly run carries from stage to stage (SPEC §1, §10): its paths, its files'
outcomes, its rejects and warnings, and the store it holds."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from connectors import inbox as inbox_io
from connectors.report_charts import ChartRenderer
from connectors.store import Store
from transforms.context import Config, RunContext
from transforms.delivery import DeliveryRow


@dataclass
class RunPaths:
    inbox: Path
    outbox: Path
    state: Path

    def places(self) -> list[tuple[str, Path]]:
        """The run's folders as an operator names them (in the line of a stopped run)."""
        return [("the state store's folder", self.state.parent), ("the outbox", self.outbox),
                ("the inbox", self.inbox)]  # fmt: skip


@dataclass
class FileRecord:
    name: str
    kind: str | None
    sha256: str | None
    outcome: str  # applied | duplicate | quarantined | deferred
    rows_read: int = 0
    rows_applied: int = 0
    rows_rejected: int = 0
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "sha256": self.sha256,
            "outcome": self.outcome,
            "rows_read": self.rows_read,
            "rows_applied": self.rows_applied,
            "rows_rejected": self.rows_rejected,
            "reason": self.reason,
        }


@dataclass
class Run:
    """Everything one run accumulates; handed from stage to stage."""

    paths: RunPaths
    config: Config
    as_of: dt.datetime
    store: Store
    ctx: RunContext
    started_at: dt.datetime
    scan: inbox_io.InboxScan | None = None
    files: list[FileRecord] = field(default_factory=list)
    rejects: list[pl.DataFrame] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    shipping_rows: list[dict[str, Any]] = field(default_factory=list)
    shipping_exceptions: list[pl.DataFrame] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    report_dir: Path | None = None
    pool_sizes: dict[int, int] = field(default_factory=dict)  # pid -> serials at the start
    orchestrator: str = "in-process"  # or "prefect" (run_summary.json, SPEC §11)
    tenant: str | None = None  # the tenant of a deployment (§11 tenants), for notifications
    # export files / partner answers being written while the run goes on (file name, job)
    outputs: list[tuple[str, Future[list[int]]]] = field(default_factory=list)
    output_ids: set[int] = field(default_factory=set)  # recorded files handed to a job
    # the run's delivery tries (§8.1): the rows of deliveries.csv, oldest file first
    # (`transforms.delivery.deliveries_frame` makes the report's frame of them), and the
    # files still waiting for delivery after the run (run_summary.json deliveries.pending)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    deliveries_pending: int = 0
    _writer: ThreadPoolExecutor | None = None
    # draws the charts of report.html in a helper process (connectors.report_charts)
    chart_renderer: ChartRenderer | None = None
    # `cmi validate` (§1): the same stages over a read-only view of the state; no inbox
    # file is moved and no export or answer is written
    dry_run: bool = False

    def close_chart_renderer(self) -> None:
        if self.chart_renderer is not None:
            self.chart_renderer.close()
            self.chart_renderer = None

    def archive(self, path: Path) -> None:
        """Move a processed file to the inbox's archive (§9); not in a dry run."""
        if not self.dry_run:
            inbox_io.archive_file(path, self.paths.inbox, self.run_id)

    def quarantine(self, path: Path, reason: str) -> None:
        """Move a file rejected whole to the quarantine with its reason (§9); not in a dry run."""
        if not self.dry_run:
            inbox_io.quarantine_file(path, self.paths.inbox, self.run_id, reason)

    def output_writer(self) -> ThreadPoolExecutor:
        """The thread that writes export files and answers while the run goes on."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cmi-outbox")
        return self._writer

    def stop_output_writer(self) -> None:
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None

    @property
    def run_id(self) -> str:
        return self.ctx.run_id


def timed(run: Run, stage: str, started: float) -> None:
    """Add the time since `started` to the stage's duration (run_summary.json)."""
    run.durations[stage] = round(run.durations.get(stage, 0.0) + time.perf_counter() - started, 3)
