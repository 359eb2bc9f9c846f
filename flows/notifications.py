"""Who hears about a night (SPEC §2 `[notify]`, §11): one message per run whose outcome is in
`on`, through Apprise.  The same for an in-process run and a Prefect flow run: the stages
call these.  A message that cannot be sent is a warning of the run, never a failure."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from connectors import notify
from flows.run_state import Run
from transforms.context import Config
from transforms.run_outcome import notification, should_notify

log = logging.getLogger("cmi")


def _report(config: Config, report_dir: Path | None) -> str | None:
    if report_dir is None:
        return None
    return str(report_dir / "report.html") if config.reports.html else str(report_dir)


def notify_run(run: Run, summary: dict[str, Any], report_dir: Path) -> None:
    """Called with the run summary before run_summary.json and report.html are written (in
    `report_dir`), so that a target that cannot be reached is one of their warnings."""
    cfg = run.config.notify
    failed = bool(run.unexpected)  # the run ends with exit 1
    if not cfg.urls or not should_notify(cfg.on, summary, failed=failed):
        return
    message = notification(summary, tenant=run.tenant, run_id=run.run_id, failed=failed,
                           report=_report(run.config, report_dir))  # fmt: skip
    warnings = notify.send(cfg.urls, message.title, message.body)
    summary.setdefault("warnings", []).extend(warnings)
    run.warnings.extend(warnings)


def notify_failure(
    config: Config, *, tenant: str | None, run_id: str | None, report_dir: Path | None,
    error: BaseException,
) -> None:  # fmt: skip
    """A run that stopped before its summary (exit 1): the message names the error."""
    cfg = config.notify
    if not cfg.urls or not should_notify(cfg.on, None, failed=True):
        return
    message = notification(None, tenant=tenant, run_id=run_id, failed=True,
                           report=str(report_dir) if report_dir else None,
                           error=f"{type(error).__name__}: {error}")  # fmt: skip
    for warning in notify.send(cfg.urls, message.title, message.body):
        log.warning("run %s: warning: %s", run_id or "-", warning)
