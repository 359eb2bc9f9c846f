"""The nightly Prefect flow: one task per stage of `flows.pipeline` (SPEC §1).

`nightly` is the real Prefect flow (used by `cmi serve`, and by `cmi run` when a
Prefect API is configured).  `run_local` runs the very same stages in-process
without an orchestrator, so a one-off `cmi run` does not wait for Prefect's
temporary server.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

# Prefect's own server (the temporary one of a `cmi run --prefect` too) sends a usage
# heartbeat to Prefect; on these stores its SQLite write collides with the run's and
# prints a "database is locked" traceback on every run.  Off unless the user sets it.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, task  # noqa: E402 - after the setting above
from prefect.cache_policies import NO_CACHE  # noqa: E402

from flows import pipeline  # noqa: E402
from flows.pipeline import RunPaths  # noqa: E402
from transforms.context import Config  # noqa: E402

_TASKS: dict[Any, Any] = {}


def _as_task(fn: Any) -> Any:
    if fn not in _TASKS:
        _TASKS[fn] = task(fn, name=fn.__name__, cache_policy=NO_CACHE, persist_result=False)
    return _TASKS[fn]


def _call_task(fn: Any, *args: Any) -> Any:
    if fn is pipeline.apply_stage:
        return _as_task(fn).with_options(name=f"apply_{args[1]}")(*args)
    return _as_task(fn)(*args)


@flow(name="nightly", persist_result=False, log_prints=True)
def nightly(paths: RunPaths, config: Config, as_of: dt.datetime) -> dict[str, Any]:
    """One nightly run of cmi: prepare, scan, apply each stage, write reports, finish."""
    return pipeline.run_pipeline(_call_task, paths, config, as_of)


run_local = pipeline.run_local


@flow(name="cmi-scheduled-nightly", persist_result=False)
def scheduled_nightly(
    inbox: str, outbox: str, state: str, config: str | None = None
) -> dict[str, Any]:
    """The served flow: paths as plain strings, the clock is the time the run starts."""
    from pathlib import Path

    from connectors.config import load_config

    cfg = load_config(Path(config), explicit=True) if config else Config()
    as_of = dt.datetime.now().replace(microsecond=0)
    return pipeline.run_pipeline(
        _call_task, RunPaths(Path(inbox), Path(outbox), Path(state)), cfg, as_of
    )
