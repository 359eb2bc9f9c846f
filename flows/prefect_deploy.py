"""`cmi serve` and `cmi deploy` against a Prefect server (SPEC §11).

- `deploy_tenants`: one deployment `nightly/<tenant>` per tenant in a process work pool
  (created when missing), each on its tenant's cron and time zone, at most one run at a time
  (a concurrency limit of 1; the state store's lock stays the last guard); a deployment of
  the pool whose tenant left the file is paused.
- Crashed runs: every cmi flow run sends a heartbeat every 30 s
  (PREFECT_FLOWS_HEARTBEAT_FREQUENCY in the deployment's environment), and an automation
  (Prefect's documented "crash zombie flows", also started by a run's Running state)
  marks a cmi flow run that stopped sending them (its worker and process killed, the
  machine lost) as Crashed after 90 s, which also frees the tenant's concurrency slot: the
  tenant's next run starts and recovers as SPEC §8 says.  The automation only watches flow
  runs tagged `cmi`, so other flows on a shared server are left alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.config import ConfigError
from flows.prefect_run import API_TIMEOUT_S, api_answers
from flows.tenants import Tenant

PROJECT = Path(__file__).resolve().parents[1]
ENTRYPOINT = "flows/nightly.py:nightly"
FLOW_NAME = "nightly"
TAG = "cmi"
HEARTBEAT_S = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY of cmi's flow runs (Prefect's minimum)
CRASH_AFTER = dt.timedelta(seconds=90)  # no heartbeat for this long: the run has crashed
AUTOMATION = "cmi: mark flow runs without heartbeat as Crashed"
RUN_ENV = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # fmt: skip

START_A_SERVER = (
    "start one (`prefect server start`; on PostgreSQL when workers run the nights, see the "
    "README) and set PREFECT_API_URL, e.g. PREFECT_API_URL=http://127.0.0.1:4200/api"
)


def require_server() -> str:
    """The URL of a Prefect server that answers; else a configuration error (exit 2)
    that says how to start one (a temporary server cannot schedule anything)."""
    import os

    from prefect.settings import PREFECT_API_URL

    url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()  # else the profile's
    if not url:
        raise ConfigError(f"no Prefect server is configured (PREFECT_API_URL is not set): {START_A_SERVER}")  # fmt: skip
    why = api_answers(url, API_TIMEOUT_S)
    if why is not None:
        raise ConfigError(f"the Prefect server at {url} {why}: {START_A_SERVER}")
    return str(url)


def ensure_work_pool(client: Any, pool: str) -> bool:
    """Create the process work pool `pool` when missing; True when it was created."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    try:
        existing = client.read_work_pool(pool)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        return True
    if existing.type != "process":
        raise ConfigError(
            f"work pool {pool!r} is of type {existing.type!r}: cmi deploys to a process work "
            "pool; give another --pool (it is created when missing)"
        )
    return False


def zombie_automation() -> Any:
    """Prefect's documented "crash zombie flows" automation, limited to cmi's flow runs."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=AUTOMATION,
        description=(
            f"A cmi flow run (tag {TAG!r}) that sent no heartbeat for "
            f"{int(CRASH_AFTER.total_seconds())} s has lost its process: mark it Crashed, "
            "which frees its tenant's concurrency slot.  Made by `cmi deploy`."
        ),
        trigger=EventTrigger(
            # a run's Running state too: a process lost before its first heartbeat reached
            # the server (killed in its first seconds) is caught as well
            after={"prefect.flow-run.heartbeat", "prefect.flow-run.Running"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },  # fmt: skip
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=CRASH_AFTER,
        ),
        actions=[
            ChangeFlowRunState(
                name="Crashed",
                state=StateType.CRASHED,
                force=False,
                message=(
                    f"no heartbeat for {int(CRASH_AFTER.total_seconds())} s: the worker or its "
                    "flow run process was lost; the tenant's next run recovers (SPEC §8)"
                ),
            )
        ],
    )


def canonical(value: Any) -> Any:
    """An automation's JSON without the ids the server gives its parts, and with its sets of
    names (a trigger's `after`, `expect`, `for_each`) in one order: a set's order in JSON
    changes from one process to the next, and two equal automations must compare equal."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        items = [canonical(v) for v in value]
        return sorted(items) if all(isinstance(v, str) for v in items) else items
    return value


def _comparable(automation: Any) -> dict[str, Any]:
    """What an automation does (`canonical`)."""
    data = automation.model_dump(mode="json", include={"name", "description", "enabled", "trigger",
                                                       "actions", "actions_on_trigger",
                                                       "actions_on_resolve"})  # fmt: skip
    return dict(canonical(data))


def ensure_zombie_automation(client: Any) -> None:
    """Create the automation, or bring an earlier one up to date — and leave an identical one
    alone: an update gives its trigger a new id, which drops the heartbeats it is waiting on
    (a night lost just before a `cmi deploy` would never be marked Crashed)."""
    wanted = zombie_automation()
    existing = client.read_automations_by_name(AUTOMATION)
    if not existing:
        client.create_automation(wanted)
        return
    first, *extra = existing
    if _comparable(first) != _comparable(wanted):
        client.update_automation(first.id, wanted)
    for other in extra:
        client.delete_automation(other.id)


def _schedule(cron: str, timezone: str) -> Any:
    from prefect.schedules import Cron

    return Cron(cron, timezone=timezone)


def deploy_tenants(tenants: list[Tenant], pool: str, echo: Callable[[str], None]) -> list[str]:
    """Register or update `nightly/<tenant>` for every tenant; pause the pool's other nightly
    deployments.  Returns the names of the deployments paused."""
    from prefect.client.orchestration import get_client

    from flows.nightly import nightly

    with get_client(sync_client=True) as client:
        if ensure_work_pool(client, pool):
            echo(f"work pool {pool!r} created (type process)")
        ensure_zombie_automation(client)
    from prefect.deployments.runner import deploy

    source: Any = nightly.from_source(source=str(PROJECT), entrypoint=ENTRYPOINT)
    deployments: list[Any] = [
        source.to_deployment(
            name=t.name,
            work_pool_name=pool,
            parameters=t.parameters(),
            schedule=_schedule(t.cron, t.timezone),
            concurrency_limit=1,
            job_variables={"env": dict(RUN_ENV)},
            tags=[TAG],
            description=f"cmi nightly run of tenant {t.name} (from `cmi deploy`)",
            paused=False,
        )
        for t in tenants
    ]
    deploy(*deployments, work_pool_name=pool, print_next_steps_message=False,
           ignore_warnings=True)  # fmt: skip
    for t in tenants:
        echo(f"deployment {FLOW_NAME}/{t.name}: '{t.cron}' in {t.timezone}, pool {pool!r}")
    return _pause_removed(pool, {t.name for t in tenants}, echo)


def _pause_removed(pool: str, keep: set[str], echo: Callable[[str], None]) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        WorkPoolFilter,
        WorkPoolFilterName,
    )

    paused = []
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        )
        for d in deployments:
            if d.name not in keep and not d.paused:
                client.pause_deployment(d.id)
                paused.append(d.name)
                echo(f"deployment {FLOW_NAME}/{d.name}: paused (no longer in the tenants file)")
    return paused


def serve_nightly(parameters: dict[str, Any], cron: str, timezone: str, name: str) -> None:
    """Serve the flow `nightly` on a schedule in this process until stopped (Ctrl-C)."""
    import os

    from prefect.client.orchestration import get_client

    from flows.nightly import nightly

    # the served runs are child processes: they inherit it (30 s: the automation's 90 s
    # without a heartbeat must never catch a live run)
    os.environ.update(RUN_ENV)
    with get_client(sync_client=True) as client:
        ensure_zombie_automation(client)
    nightly.serve(name=name, schedule=_schedule(cron, timezone), parameters=parameters,
                  tags=[TAG], description="cmi nightly run (from `cmi serve`)",
                  global_limit=1, limit=1, print_starting_message=False)  # fmt: skip
