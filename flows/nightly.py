"""The nightly Prefect flow `nightly` (SPEC §11): one task run per stage of `flows.pipeline`.

Its parameters are what the Prefect UI shows and a deployment stores: absolute paths as
text (inbox, outbox, state store, cmi.toml — never a secret), the run's clock, the tenant
and its time zone.  The flow run is named by the run id (with the tenant); cmi's log lines
go to the flow run's log as well as to `cmi.log`; three artifacts describe the night; the
final state says whether it needs a person:

- Completed — a night that needs nobody (rejected rows are normal business);
- Completed named `Attention` — a file quarantined, a failed delivery, a failed invariant;
- Failed — an unexpected failure (exit 1), or a run refused by the lock or by its
  configuration, with the one-line message the command line prints.

`cmi run` without Prefect calls `pipeline.run_local`: the very same stages, so the two
paths cannot drift apart.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

# Prefect's own server (the temporary one of a `cmi run --prefect` too) sends a usage
# heartbeat to Prefect; on these stores its SQLite write collides with the run's and
# prints a "database is locked" traceback on every run.  Off unless the user sets it.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, task  # noqa: E402 - after the setting above
from prefect.artifacts import (  # noqa: E402
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.context import FlowRunContext, TaskRunContext  # noqa: E402
from prefect.logging.handlers import APILogHandler  # noqa: E402
from prefect.states import Completed, Failed, State  # noqa: E402

from connectors.config import ConfigError, load_config  # noqa: E402
from connectors.faults import RunStopped  # noqa: E402
from connectors.run_reports import read_summary, rejects_by_file_and_rule  # noqa: E402
from connectors.store import StateLocked  # noqa: E402
from flows import pipeline  # noqa: E402
from flows.cli_common import parse_as_of, set_log_clock, setup_log  # noqa: E402
from flows.pipeline import RunPaths  # noqa: E402
from transforms.context import Config  # noqa: E402
from transforms.run_outcome import ATTENTION_STATE, attention_reasons  # noqa: E402

log = logging.getLogger("cmi")

bodies_started = 0  # flow bodies begun in this process (`cmi run` never runs a night twice)

_TASKS: dict[Any, Any] = {}


def _as_task(fn: Any) -> Any:
    if fn not in _TASKS:
        _TASKS[fn] = task(fn, name=fn.__name__, cache_policy=NO_CACHE, persist_result=False)
    return _TASKS[fn]


def _call_task(fn: Any, *args: Any) -> Any:
    if fn is pipeline.apply_stage:
        return _as_task(fn).with_options(name=f"apply_{args[1]}")(*args)
    return _as_task(fn)(*args)


def run_clock(as_of: str | None, timezone: str | None) -> dt.datetime:
    """The run's clock (SPEC §1): `as_of` as given, else now — in the tenant's time zone when
    it has one (a tenant's 02:00 night is run 20261123T020000 wherever the worker is)."""
    if as_of:
        return parse_as_of(as_of)
    if timezone:
        return dt.datetime.now(ZoneInfo(timezone)).replace(tzinfo=None, microsecond=0)
    return dt.datetime.now().replace(microsecond=0)


def flow_run_name(run_id: str, tenant: str | None) -> str:
    """The flow run's name in the Prefect UI: the run id, after the tenant when there is one."""
    return f"{tenant}/{run_id}" if tenant else run_id


_clocks: dict[tuple[str | None, str | None, str | None], dt.datetime] = {}


_EARLY_LIMIT_S = 60.0  # a run started earlier than this before its schedule is not held


def _not_before_schedule() -> None:
    """A worker may start a scheduled flow run a few seconds before its time (it fetches
    runs ahead); the night's clock must not read earlier than the time it was scheduled
    for (a night scheduled at 00:00 would be dated the day before), so it waits."""
    try:
        from prefect.runtime import flow_run

        scheduled = flow_run.scheduled_start_time
        ahead = (scheduled - dt.datetime.now(dt.UTC)).total_seconds() if scheduled else 0.0
    except Exception:  # noqa: BLE001 - without the API's answer the run goes on at once
        return
    if 0 < ahead <= _EARLY_LIMIT_S:
        time.sleep(ahead)


def _clock_of(p: dict[str, Any]) -> dt.datetime:
    """The run's clock, read once per flow run (its name and its body see the same)."""
    key = (p.get("as_of"), p.get("timezone"), p.get("tenant"))
    if key not in _clocks:
        if p.get("as_of") is None:
            _not_before_schedule()
        _clocks[key] = run_clock(p.get("as_of"), p.get("timezone"))
    return _clocks[key]


def _provisional_name() -> str:
    """The name a flow run starts with: the run id of its clock, before `prepare` picks the
    free run id (the same, or with -2, -3 …); a run refused by the lock keeps it."""
    from prefect.runtime import flow_run

    p = dict(flow_run.parameters)
    try:
        return flow_run_name(_clock_of(p).strftime("%Y%m%dT%H%M%S"), p.get("tenant"))
    except Exception:  # noqa: BLE001 - a bad clock fails in the flow body, with its message
        return flow_run_name("starting", p.get("tenant"))


def _rename_flow_run(name: str) -> None:
    from prefect.client.orchestration import get_client

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None or ctx.flow_run.name == name:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_name(ctx.flow_run.id, name)


class _ThisFlowRun(logging.Filter):
    """Records logged outside a run context (the outbox writer's thread) belong to this run."""

    def __init__(self, flow_run_id: Any) -> None:
        super().__init__()
        self.flow_run_id = flow_run_id

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            getattr(record, "flow_run_id", None) is None
            and FlowRunContext.get() is None
            and TaskRunContext.get() is None
        ):
            record.flow_run_id = self.flow_run_id
        return True


@contextmanager
def _logs_to_flow_run() -> Iterator[None]:
    """cmi's log lines (the `cmi` logger) go to the flow run's log while the flow runs."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        yield
        return
    handler = APILogHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_ThisFlowRun(ctx.flow_run.id))
    logger = logging.getLogger("cmi")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _artifact_key(tenant: str | None, what: str) -> str:
    """Artifact keys hold lowercase letters, digits and dashes only."""
    base = re.sub(r"[^a-z0-9-]+", "-", (tenant or "").lower()).strip("-")
    return f"cmi-{base}-{what}" if base else f"cmi-{what}"


def report_page_of(folder: Path) -> Path:
    """What the link artifact points at (§11): the run's report.html — or, when `[reports]
    html` is off and there is none, its report folder (never a link to a missing file)."""
    page = folder / "report.html"
    return page if page.is_file() else folder


def summary_markdown(summary: dict[str, Any], report_html: Path) -> str:
    """The markdown artifact (§11): totals, files and outcomes, warnings, invariants."""
    t = summary.get("totals", {})
    lines = [
        f"# cmi run {summary.get('run_id')}",
        "",
        f"as of {summary.get('as_of')}, {summary.get('orchestrator', '')}; report: `{report_html}`",
        "",
        "## Totals",
        "",
        "| " + " | ".join(t) + " |",
        "|" + "---|" * len(t),
        "| " + " | ".join(str(v) for v in t.values()) + " |",
    ]
    if summary.get("deliveries"):
        d = summary["deliveries"]
        lines += ["", "## Deliveries", "", ", ".join(f"{k}: {v}" for k, v in d.items())]
    lines += ["", "## Files", ""]
    files = summary.get("files", [])
    if files:
        lines += ["| file | kind | outcome | rows read | applied | rejected | reason |",
                  "|---|---|---|---:|---:|---:|---|"]  # fmt: skip
        for f in files:
            cells = [f["name"], f.get("kind") or "", f["outcome"], f["rows_read"],
                     f["rows_applied"], f["rows_rejected"], f.get("reason") or ""]  # fmt: skip
            lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    else:
        lines.append("No file in the inbox.")
    warnings = summary.get("warnings", [])
    lines += ["", f"## Warnings ({len(warnings)})", ""]
    lines += [f"- {w}" for w in warnings] or ["None."]
    lines += ["", "## Invariants", ""]
    lines += [
        f"- {'✅' if ok else '❌'} {name}" for name, ok in summary.get("invariants", {}).items()
    ]
    return "\n".join(lines) + "\n"


def _publish_artifacts(outline: dict[str, Any], tenant: str | None) -> dict[str, Any] | None:
    """The three artifacts of §11; returns the run summary they describe."""
    folder = Path(outline["report_dir"]) if outline.get("report_dir") else None
    if folder is None:
        return None
    summary = read_summary(folder)
    if summary is None:
        return None
    report_html, run_id = report_page_of(folder), outline["run_id"]
    calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
        (create_markdown_artifact, (summary_markdown(summary, report_html),),
         {"key": _artifact_key(tenant, "summary"),
          "description": f"run {run_id}: totals, files, warnings, invariants"}),
        (create_table_artifact, (rejects_by_file_and_rule(folder),),
         {"key": _artifact_key(tenant, "rejects"),
          "description": f"run {run_id}: rejected rows by file and rule"}),
        (create_link_artifact, (report_html.as_uri(),),
         {"link_text": str(report_html), "key": _artifact_key(tenant, "report"),
          "description": f"run {run_id}: the report a person reads"}),
    ]  # fmt: skip
    # three requests at once (each sees this flow run's context)
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        done = [pool.submit(contextvars.copy_context().run, fn, *args, **kw)
                for fn, args, kw in calls]  # fmt: skip
        for future in done:
            future.result()
    return summary


def final_state(outline: dict[str, Any], summary: dict[str, Any] | None) -> State[Any]:
    """Failed for an unexpected error (exit 1); Completed named `Attention` for a night that
    needs a person; Completed otherwise.  The outline is the state's data (the command line
    prints it)."""
    if outline.get("unexpected"):
        first = outline["unexpected"][0]
        return Failed(message=f"unexpected error: {first} (details in cmi.log)", data=outline)
    reasons = attention_reasons(summary) if summary else []
    if reasons:
        return Completed(name=ATTENTION_STATE, message="; ".join(reasons), data=outline)
    return Completed(message=f"run {outline['run_id']}: nothing needs a person", data=outline)


@flow(name="nightly", flow_run_name=_provisional_name, persist_result=False, log_prints=True)
def nightly(
    inbox: str,
    outbox: str,
    state: str,
    config: str | None = None,
    as_of: str | None = None,
    tenant: str | None = None,
    timezone: str | None = None,
) -> Any:
    """One nightly run of cmi over absolute folders: prepare, scan, apply each stage, write
    the reports (§11).  `config` is the path of a cmi.toml (None: the built-in settings);
    `as_of` the run's clock (None: now, in `timezone` when given)."""
    global bodies_started
    bodies_started += 1
    paths = RunPaths(Path(inbox), Path(outbox), Path(state))
    setup_log(paths.state)
    with _logs_to_flow_run():
        try:
            clock = _clocks.pop((as_of, timezone, tenant), None) or run_clock(as_of, timezone)
            set_log_clock(clock)  # §1: the run's clock is the log's too (a worker's runs as well)
            cfg = load_config(Path(config), explicit=True) if config else Config()
            if not paths.inbox.is_dir():  # SPEC §1: a wrong folder must not pass for an empty night
                raise ConfigError(
                    f"the inbox {paths.inbox} does not exist or is not a folder: create it, "
                    "or correct the inbox of this deployment"
                )
            paths.outbox.mkdir(parents=True, exist_ok=True)

            def call(fn: Any, *args: Any) -> Any:
                result = _call_task(fn, *args)
                if fn is pipeline.prepare:
                    _rename_flow_run(flow_run_name(result.run_id, tenant))
                return result

            outline = pipeline.run_pipeline(
                call, paths, cfg, clock, orchestrator="prefect", tenant=tenant
            )
        except (StateLocked, ConfigError) as err:
            log.error("%s", err)
            return Failed(message=str(err), data=err)
        except Exception as err:
            stop = isinstance(err, RunStopped)  # its one line says what to fix (§8)
            log.exception("run stopped" if stop else "unexpected error")
            setattr(err, "_cmi_logged", True)  # noqa: B010 - the CLI does not log it again
            message = str(err) if stop else f"unexpected error: {type(err).__name__}: {err}"
            return Failed(message=message, data=err)
        summary = _publish_artifacts(outline, tenant)
        return final_state(outline, summary)
