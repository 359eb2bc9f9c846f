"""`cmi run` through Prefect (SPEC §11): the flow `nightly` runs in this process as a flow run
of the Prefect server named by PREFECT_API_URL — or in-process, when that server does not
answer: a night is never lost to the orchestrator.

The console shows cmi's lines only: Prefect's console log (its own lines, and the
tracebacks of a refused or failed run) goes to `cmi.log` instead, so that a run refused
or failed through Prefect prints the same one line as an in-process run.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from flows.run_state import RunPaths
from transforms.context import Config

API_TIMEOUT_S = 30.0  # SPEC §11: how long `cmi run` waits for the Prefect API


def api_url() -> str | None:
    """The Prefect API the user named (PREFECT_API_URL); None: Prefect's temporary server."""
    return os.environ.get("PREFECT_API_URL") or None


def api_answers(url: str, timeout: float = API_TIMEOUT_S) -> str | None:
    """None when `url/health` answers within `timeout` s; else why not (one phrase).

    A refused connection (nothing listens: the server is down) is not waited for; a server
    that accepts and does not answer, or an address that does not respond, is tried until
    `timeout` has passed."""
    deadline = time.monotonic() + timeout
    reason = "no answer"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"did not answer within {timeout:g} s ({reason})"
        try:
            response = httpx.get(f"{url.rstrip('/')}/health", timeout=min(left, 10.0))
        except httpx.ConnectError as err:
            if "refused" in str(err).lower():
                return "refused the connection (is the server running?)"
            reason = str(err) or type(err).__name__
        except httpx.HTTPError as err:
            reason = str(err) or type(err).__name__
        else:
            if response.status_code == 200:
                return None
            reason = f"HTTP {response.status_code}"
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def prefect_console_to_log(log_path: Path) -> None:
    """Prefect's console output (its run lines, tracebacks) goes to `cmi.log`, not the console."""
    from prefect.logging.configuration import setup_logging
    from prefect.logging.handlers import PrefectConsoleHandler

    setup_logging()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, PrefectConsoleHandler):
            root.removeHandler(handler)
    internal = logging.getLogger("prefect._internal")
    for handler in list(internal.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            internal.removeHandler(handler)
    target = str(log_path.resolve())
    if not any(getattr(h, "baseFilename", None) == target for h in root.handlers):
        try:
            handler = logging.FileHandler(log_path, encoding="utf-8")
        except OSError:  # no log folder: Prefect's lines are lost, never on the console
            return
        handler.setLevel(logging.INFO)
        from flows.cli_common import LogFormatter

        handler.setFormatter(LogFormatter())  # stamped with the run's clock, as cmi's lines
        root.addHandler(handler)
        internal.addHandler(handler)


@contextmanager
def _no_heartbeat_unless_asked() -> Iterator[None]:
    """A flow run of `cmi run` sends no heartbeat unless the user set a frequency (in the
    environment — PREFECT_FLOWS_HEARTBEAT_FREQUENCY or its old name
    PREFECT_RUNNER_HEARTBEAT_FREQUENCY — or in the Prefect profile).  Its heartbeats have no
    reader: the automation that marks a silent run Crashed watches the deployments' runs
    (tag `cmi`, `cmi deploy` / `cmi serve`, which set the frequency in their runs'
    environment).  And Prefect ends a sync flow run by joining its heartbeat thread, which
    sleeps in whole seconds: 0-1 s added to every night (0.33-0.69 s in profiles of an
    empty night)."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    if "heartbeat_frequency" in get_current_settings().flows.model_fields_set:
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@contextmanager
def temporary_server_waits(seconds: float = API_TIMEOUT_S) -> Iterator[None]:
    """Prefect's temporary server (`--prefect` without PREFECT_API_URL) is waited for
    `seconds` (SPEC §11: 30 s) before the night goes in-process — Prefect's own default is
    20 s, too short for its first start on a busy machine (its database is created then) —
    unless the user set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS."""
    from prefect.settings import (
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
        temporary_settings,
    )

    if "startup_timeout_seconds" in get_current_settings().server.ephemeral.model_fields_set:
        yield
        return
    with temporary_settings(
        updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: int(seconds)}
    ):
        yield


def _flow_parameters(
    paths: RunPaths, config_file: Path | None, as_of: dt.datetime
) -> dict[str, Any]:
    return {
        "inbox": str(paths.inbox.resolve()),
        "outbox": str(paths.outbox.resolve()),
        "state": str(paths.state.resolve()),
        "config": str(config_file.resolve()) if config_file else None,
        "as_of": as_of.isoformat(timespec="seconds"),
    }


def run_with_prefect(
    paths: RunPaths,
    config: Config,
    config_file: Path | None,
    as_of: dt.datetime,
    log_path: Path,
    warn: Any,
) -> dict[str, Any]:
    """Run the night as a flow run of the Prefect API; in-process when it does not answer.

    `config` is the configuration already loaded (and checked) from `config_file` (None:
    the built-in settings); `warn(text)` prints a warning on the console.  A run refused or
    failed through Prefect raises the same exception as in-process, for the same exit code.
    """
    url = api_url()
    if url is not None:
        why = api_answers(url)
        if why is not None:
            return _in_process(paths, config, as_of, f"the Prefect API at {url} {why}", warn)
    prefect_console_to_log(log_path)
    from flows import nightly as nightly_module

    started = nightly_module.bodies_started
    try:
        with _no_heartbeat_unless_asked(), temporary_server_waits():
            state: Any = nightly_module.nightly(**_flow_parameters(paths, config_file, as_of),
                                                return_state=True)  # fmt: skip
    except Exception as err:
        if nightly_module.bodies_started != started:
            raise  # the night ran: never run it twice
        logging.getLogger("cmi").exception("the Prefect flow run could not start")
        where = f"at {url}" if url else "(Prefect's temporary server)"
        return _in_process(
            paths, config, as_of,
            f"the Prefect API {where} failed before the run started "
            f"({type(err).__name__}: {err})", warn,
        )  # fmt: skip
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not isinstance(result, dict):
        raise RuntimeError(f"the Prefect flow run ended {state.name}: {state.message}")
    result["flow_run"] = state.state_details.flow_run_id
    return result


def _in_process(
    paths: RunPaths, config: Config, as_of: dt.datetime, why: str, warn: Any
) -> dict[str, Any]:
    from flows.pipeline import run_local

    note = f"{why}: the run went in-process (orchestrator: in-process)"
    warn(note)
    logging.getLogger("cmi").warning("%s", note)
    return run_local(paths, config, as_of, notes=(note,))
