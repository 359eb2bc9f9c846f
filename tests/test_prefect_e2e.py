"""Nightly operations on a real Prefect server (SPEC §1 exit codes, §11), end to end.

One Prefect server on a private PostgreSQL cluster for the session
(`tests/servers/prefect_server.py`), real `prefect worker` processes, `cmi` run as the
operations team runs it (a subprocess).  What is proved here:

- `cmi run` through Prefect: the flow run is named by the run id, takes absolute paths, has
  one task run per stage, cmi's lines in its log, three artifacts, and ends `Attention`
  for a night that needs a person; a lock refusal prints one line (exit 3), an unexpected
  failure one line (exit 1), and the flow run ends Failed with that message;
- `cmi deploy`: one deployment per tenant, their cron schedules fire within their minute
  on two workers at the same time, each tenant's outputs equal an in-process run's;
  `cmi serve`'s schedule fires too; a tenant removed from the file is paused; Prefect's
  own `flow-run ls`, `flow ls`, `deployment ls` answer;
- a real server killed before a run: `cmi run` goes in-process with one warning line and
  the outputs of a night without Prefect;
- a worker killed with SIGKILL (with its flow run process) during a night leaves a Crashed
  flow run, and the tenant's next run ends exactly as an uninterrupted night.

The killed night is started first, in the background (`killed_night`), because Prefect
needs ~2 minutes to notice the lost heartbeats: the other tests run meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from flows.pipeline import run_local
from tests.pipeline_helpers import csv, drop, paths_in
from tests.servers.common import stop_process
from tests.servers.postgres import Postgres
from tests.servers.prefect_server import (
    PrefectServer,
    Worker,
    start_prefect_server,
    start_worker,
    wait_for_workers_online,
)
from transforms.codes import gs1_check_digit
from transforms.context import Config, InboxConfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

STAGES = ["prepare", "scan", "apply_master_data", "apply_serials", "apply_contracts",
          "apply_partner_requests", "apply_shipping", "apply_exports", "deliver", "write_reports",
          "finish"]  # fmt: skip
AS_OF = "2026-11-23T02:00:00"
SETTLED = Config(inbox=InboxConfig(settle_seconds=0))


# --------------------------------------------------------------------------- helpers


def night(
    seed: int, serials: int = 60_000, pools: int = 3, bad_file: bool = False
) -> dict[str, str]:
    """A night with master data, serial pools (one transaction each), assignments, partner
    requests and exports; `seed` keeps tenants' codes apart."""
    bodies = [f"{seed:02d}{k:02d}123456789" for k in range(3)]
    products = [body + gs1_check_digit(body) for body in bodies]
    files = {
        "products_a.csv": csv("product_code,product_name", *[f"{p},Product {p}" for p in products]),
        "cmos_a.csv": csv("cmo_id,cmo_name,city,country,produceable_products",
                          *[f"CMO{i},Maker {i},Basel,CH,{';'.join(products)}" for i in range(4)]),
        "partnerships_a.csv": csv("cmo_id,event,contact_email,tenant,payment_model",
                                  "CMO0,invite,a@b.example,,", "CMO0,accept,,t0,partner"),
    }  # fmt: skip
    per = serials // (pools * len(products))
    for k in range(pools):
        files[f"serial_pool_{k}.csv"] = csv(
            "product_code,serial",
            *[f"{p},T{seed}K{k}S{i:07d}" for p in products for i in range(per)],
        )
    files["assignments_a.csv"] = csv("cmo_id,product_code,quantity",
                                     *[f"CMO{i % 4},{products[i % 3]},{900 + i}" for i in range(12)])  # fmt: skip
    files["partner_requests_a.csv"] = csv("request_id,cmo_id,product_code,quantity",
                                          *[f"R{seed}-{i},CMO0,{products[i % 3]},{50 + i}" for i in range(3)])  # fmt: skip
    files["exports_a.csv"] = csv("cmo_id,product_code,quantity,allow_already_exported",
                                 *[f"CMO{i % 4},{products[i % 3]},{300 + i},N" for i in range(12)])  # fmt: skip
    if bad_file:
        files["what_is_this.csv"] = "a,b\n1,2\n"
    return files


def outputs(outbox: Path, run_id: str | None = None) -> dict[str, bytes]:
    """Export files, partner answers and the report CSVs of a run (LATEST by default)."""
    run_id = run_id or (outbox / "reports" / "LATEST").read_text().strip()
    got = {str(p.relative_to(outbox)): p.read_bytes()
           for sub in ("serials", "partners") for p in sorted((outbox / sub).rglob("*.csv"))}  # fmt: skip
    got.update(
        {p.name: p.read_bytes() for p in sorted((outbox / "reports" / run_id).glob("*.csv"))}
    )
    return got


def reference(tmp: Path, files: dict[str, str], as_of: dt.datetime) -> dict[str, bytes]:
    """The same night run in-process, uninterrupted, on fresh folders."""
    drop(tmp / "inbox", files)  # type: ignore[arg-type]
    outline = run_local(paths_in(tmp), SETTLED, as_of)
    return outputs(tmp / "outbox", outline["run_id"])


def cmi(
    server: PrefectServer, *args: str, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=server.env(**env),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@contextlib.contextmanager
def api(server: PrefectServer) -> Iterator[Any]:
    """A Prefect client of the test server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as c:
        yield c


def flow_runs(server: PrefectServer, **filters: Any) -> list[Any]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterName,
    )

    kwargs: dict[str, Any] = {}
    if "name" in filters:
        kwargs["flow_run_filter"] = FlowRunFilter(name=FlowRunFilterName(any_=[filters["name"]]))
    if "deployment" in filters:
        kwargs["deployment_filter"] = DeploymentFilter(
            name=DeploymentFilterName(any_=[filters["deployment"]])
        )
    with api(server) as c:
        return list(c.read_flow_runs(**kwargs))


def run_events(
    server: PrefectServer, flow_run_id: Any, until: str, timeout: float = 120
) -> list[str]:
    """The names of the events about a flow run, once `until` is among them (the server
    stores events a moment after they are sent)."""
    body = {"filter": {"resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
                       "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50}  # fmt: skip
    deadline, names = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        answer = httpx.post(f"{server.api_url}/events/filter", json=body, timeout=30)
        answer.raise_for_status()
        names = [e["event"] for e in answer.json()["events"]]
        if until in names:
            return names
        time.sleep(1)
    raise AssertionError(f"no {until} event for flow run {flow_run_id} in {timeout} s: {names}")


def wait_for_runs(server: PrefectServer, deployment: str, count: int, final: bool = True,
                  timeout: float = 300) -> list[Any]:  # fmt: skip
    """The deployment's first `count` flow runs that started (and ended, when `final`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in flow_runs(server, deployment=deployment) if r.start_time]
        done = [r for r in runs if r.state and r.state.is_final()] if final else runs
        if len(done) >= count:
            return sorted(done, key=lambda r: r.start_time)[:count]
        time.sleep(2)
    raise AssertionError(f"{deployment}: fewer than {count} run(s) in {timeout} s\n{server.logs()}")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (read from /proc): a worker's flow run processes."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tenants_file(path: Path, tenants: dict[str, dict[str, str]]) -> Path:
    lines = []
    for name, spec in tenants.items():
        lines.append(f'[tenants."{name}"]')
        lines += [f'{k} = "{v}"' for k, v in spec.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def folders(root: Path) -> dict[str, str]:
    return {"inbox": str(root / "inbox"), "outbox": str(root / "outbox"),
            "state": str(root / "state" / "cmi.duckdb")}  # fmt: skip


# --------------------------------------------------------------------------- killed night


@dataclass
class KilledNight:
    root: Path
    files: dict[str, str]
    thread: threading.Thread | None = None
    flow_run_id: Any = None
    killed: list[int] = field(default_factory=list)
    error: BaseException | None = None
    spare: Worker | None = None


def _kill_during_a_night(server: PrefectServer, k: KilledNight) -> None:
    """Deploy tenant `crashy`, run its night on worker wc, and SIGKILL wc and its flow run
    process once the night has committed its first serial pool file (more to come)."""
    spec = {**folders(k.root), "cron": "0 2 29 2 *", "timezone": "Europe/Berlin"}
    done = cmi(server, "deploy", "--tenants", str(tenants_file(k.root / "t.toml", {"crashy": spec})),
               "--pool", "crash")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    worker = start_worker(server, "crash", "wc")
    with api(server) as c:
        deployment = c.read_deployment_by_name("nightly/crashy")
        run = c.create_flow_run_from_deployment(deployment.id, parameters={"as_of": AS_OF})
    k.flow_run_id = run.id
    archived = k.root / "inbox" / "archive"
    deadline = time.monotonic() + 300
    while not list(archived.glob("*/serial_pool_0.csv")):
        assert time.monotonic() < deadline, f"the night did not start\n{server.logs()}"
        time.sleep(0.05)
    victims = [worker.proc.pid, *descendants(worker.proc.pid)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.proc.wait(10)
    k.killed = victims
    assert not list(archived.glob("*/exports_a.csv")), "the night ended before the kill"


@pytest.fixture(scope="module")
def killed_night(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KilledNight]:  # fmt: skip
    root = tmp_path_factory.mktemp("crashy")
    k = KilledNight(root, night(7, serials=480_000, pools=6))
    drop(root / "inbox", k.files)  # type: ignore[arg-type]

    def work() -> None:
        try:
            _kill_during_a_night(prefect_server, k)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            k.error = err

    k.thread = threading.Thread(target=work, daemon=True)
    k.thread.start()
    yield k
    k.thread.join(60)


# --------------------------------------------------------------------------- cmi run


@pytest.mark.usefixtures("killed_night")  # started first: its crash is noticed meanwhile
def test_cmi_run_through_prefect_is_a_readable_flow_run(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    drop(tmp_path / "inbox", night(1, serials=3_000, pools=1, bad_file=True))  # type: ignore[arg-type]
    (tmp_path / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")
    args = ["run", "--inbox", "inbox", "--outbox", "outbox", "--state", "state/cmi.duckdb",
            "--config", "cmi.toml", "--as-of", AS_OF]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=tmp_path,
                          env=prefect_server.env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr + prefect_server.logs()
    assert done.stderr == ""  # nothing from the orchestrator on the console
    assert done.stdout.startswith("run 20261123T020000: 8 file(s)")
    assert "what_is_this.csv: quarantined" in done.stdout

    (run,) = flow_runs(prefect_server, name="20261123T020000")
    assert run.state.type.value == "COMPLETED" and run.state.name == "Attention"
    assert run.state.message == "1 file(s) quarantined"
    assert run.parameters == {
        "inbox": str(tmp_path / "inbox"), "outbox": str(tmp_path / "outbox"),
        "state": str(tmp_path / "state" / "cmi.duckdb"), "config": str(tmp_path / "cmi.toml"),
        "as_of": AS_OF, "tenant": None, "timezone": None,
    }  # fmt: skip
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    with api(prefect_server) as c:
        tasks = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        artifacts = c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    assert sorted(t.name.rsplit("-", 1)[0] for t in tasks) == sorted(STAGES)
    # no heartbeat: nothing reads a `cmi run`'s (the Crashed automation watches deployments'
    # runs) and Prefect's wait for its thread added 0-1 s to every night
    events = run_events(prefect_server, run.id, until="prefect.flow-run.Attention")
    assert "prefect.flow-run.Running" in events and "prefect.flow-run.heartbeat" not in events
    assert all(t.state.is_completed() for t in tasks)
    lines = [entry.message for entry in logs if entry.name == "cmi"]
    cmi_log = (tmp_path / "state" / "cmi.log").read_text()
    # §1: the run's clock stamps the run's lines of cmi.log, Prefect's flow and task run
    # lines in it too (a line Prefect may add at the process's exit is after the run)
    run_lines = [line for line in cmi_log.splitlines()
                 if any(f" {name}: " in line for name in ("cmi", "prefect.flow_runs",
                                                          "prefect.task_runs"))]  # fmt: skip
    assert len(run_lines) > 9 + len(STAGES)
    assert all(line.startswith("2026-11-23 02:00:00,000 ") for line in run_lines), cmi_log
    for expected in ("run 20261123T020000: products_a.csv: applied, 3 row(s) applied, 0 rejected",
                     "run 20261123T020000: what_is_this.csv: quarantined — unrecognised file kind",
                     "run 20261123T020000 (prefect): 8 file(s), 7 applied, 1 quarantined"):  # fmt: skip
        assert any(line.startswith(expected) for line in lines), (expected, lines)
        assert expected in cmi_log
    assert len(lines) == 8 + 1  # one per file, and the summary (no warning tonight)
    report = tmp_path / "outbox" / "reports" / "20261123T020000"
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) == {"cmi-summary", "cmi-rejects", "cmi-report"}
    markdown = by_key["cmi-summary"].data
    assert "| files_seen | files_applied |" in markdown and "| what_is_this.csv |" in markdown
    assert "## Warnings (0)" in markdown and "## Invariants" in markdown
    rejects = json.loads(by_key["cmi-rejects"].data)
    assert rejects and all(set(r) == {"file", "rule", "rows"} for r in rejects)
    written = (report / "rejects.csv").read_text().count("\n") - 1
    assert sum(r["rows"] for r in rejects) == written
    assert str(report / "report.html") in by_key["cmi-report"].data
    summary = json.loads((report / "run_summary.json").read_text())
    assert summary["orchestrator"] == "prefect"
    want = reference(tmp_path / "ref", night(1, serials=3_000, pools=1, bad_file=True),
                     dt.datetime.fromisoformat(AS_OF))  # fmt: skip
    assert outputs(tmp_path / "outbox") == want  # the same night as in-process


def test_a_refused_or_failed_run_through_prefect_prints_one_line(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    from connectors.store import open_store

    (tmp_path / "inbox").mkdir()
    base = ["run", "--inbox", str(tmp_path / "inbox"), "--outbox", str(tmp_path / "outbox"),
            "--state", str(tmp_path / "state" / "cmi.duckdb")]  # fmt: skip
    store = open_store(tmp_path / "state" / "cmi.duckdb")
    try:
        refused = cmi(prefect_server, *base, "--as-of", "2026-11-24T02:00:00")
    finally:
        store.close()
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith(
        "cmi: another run holds the lock of the state store"
    )
    (run,) = flow_runs(prefect_server, name="20261124T020000")
    assert run.state.is_failed() and run.state.message.startswith("another run holds the lock")

    (tmp_path / "outbox").mkdir(exist_ok=True)
    (tmp_path / "outbox" / "reports").write_text("a file where the reports folder should be")
    failed = cmi(prefect_server, *base, "--as-of", "2026-11-25T02:00:00")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stdout == "" and failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("cmi: run stopped: the outbox") and "cmi.log" in failed.stderr
    (run,) = flow_runs(prefect_server, name="20261125T020000")
    assert run.state.is_failed() and run.state.message.startswith("run stopped: the outbox")
    log = (tmp_path / "state" / "cmi.log").read_text()
    assert log.count("Traceback (most recent call last)") >= 1  # the details are in the log


# --------------------------------------------------------------------------- schedules


def test_tenants_nights_fire_on_schedule_on_two_workers(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    roots = {name: tmp_path / name for name in ("acme", "beta.site_2", "served")}
    nights = {"acme": night(2, serials=120_000), "beta.site_2": night(3, serials=120_000),
              "served": night(4, serials=3_000, pools=1)}  # fmt: skip
    for name, root in roots.items():
        drop(root / "inbox", nights[name])  # type: ignore[arg-type]
    (roots["acme"] / "cmi.toml").write_text("[inbox]\nsettle_seconds = 1\n")
    zones = {"acme": "Europe/Berlin", "beta.site_2": "America/New_York"}
    tenants = {name: {**folders(roots[name]), "cron": "* * * * *", "timezone": zones[name]}
               for name in zones}  # fmt: skip
    tenants["acme"]["config"] = str(roots["acme"] / "cmi.toml")
    deployed = cmi(prefect_server, "deploy", "--tenants",
                   str(tenants_file(tmp_path / "tenants.toml", tenants)), "--pool", "cmi")  # fmt: skip
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "work pool 'cmi' created (type process)" in deployed.stdout
    assert "deployment nightly/acme: '* * * * *' in Europe/Berlin, pool 'cmi'" in deployed.stdout
    for name in ("w1", "w2"):
        start_worker(prefect_server, "cmi", name)
    served_paths = folders(roots["served"])
    serve = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--cron", "* * * * *", "--timezone",
         "Asia/Tokyo", "--inbox", served_paths["inbox"], "--outbox", served_paths["outbox"],
         "--state", served_paths["state"]], env=prefect_server.env(),
        stdout=(tmp_path / "serve.log").open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_workers_online(prefect_server, "cmi", ["w1", "w2"])
        acme, beta = (wait_for_runs(prefect_server, t, 1)[0] for t in ("acme", "beta.site_2"))
        (served,) = wait_for_runs(prefect_server, "cmi", 1)
    finally:
        stop_process(serve, timeout=30)
    serve_log = (tmp_path / "serve.log").read_text()
    assert "serving nightly/cmi on '* * * * *' in Asia/Tokyo" in serve_log, serve_log

    for run, zone in ((acme, "Europe/Berlin"), (beta, "America/New_York"), (served, "Asia/Tokyo")):
        assert run.auto_scheduled, run.name  # the schedule fired it, not a person
        assert run.state.is_completed(), (run.name, run.state, prefect_server.logs())
        late = (run.start_time - run.expected_start_time).total_seconds()
        assert -5 < late < 60, (run.name, late)  # within its minute (serve may start ~0.5 s early)
        clock = dt.datetime.strptime(run.name.split("/")[-1][:15], "%Y%m%dT%H%M%S")
        expected = dt.datetime.fromtimestamp(run.expected_start_time.timestamp(), ZoneInfo(zone))
        expected = expected.replace(tzinfo=None)
        # the night's clock never reads before its schedule (a worker may start the run
        # early: it fetches runs ahead, and the flow waits for its time)
        assert 0 <= (clock - expected).total_seconds() < 120, (run.name, expected)
    assert acme.name.startswith("acme/") and beta.name.startswith("beta.site_2/")
    for run in (acme, beta, served):  # deployments' runs do send heartbeats (the automation)
        events = run_events(prefect_server, run.id, until=f"prefect.flow-run.{run.state.name}")
        assert "prefect.flow-run.heartbeat" in events, (run.name, events)
    assert "/" not in served.name
    # two workers: each night went to its own worker and neither waited for the other —
    # both flow run processes were at work at the same time (from the worker's hand-over,
    # Pending, to the end; a loaded machine can take 10-20 s to start such a process)
    with api(prefect_server) as c:
        handed = {r.id: min(s.timestamp for s in c.read_flow_run_states(r.id)
                            if s.type.value == "PENDING") for r in (acme, beta)}  # fmt: skip
    assert handed[acme.id] < beta.end_time and handed[beta.id] < acme.end_time, (handed, acme, beta)
    logs = {w.name: w.log.read_text() for w in prefect_server.workers if w.pool == "cmi"}
    picked = [{n for n, text in logs.items() if f"submitting flow run '{r.id}'" in text
               and f"Aborted submission of flow run '{r.id}'" not in text} for r in (acme, beta)]  # fmt: skip
    assert len(picked[0]) == len(picked[1]) == 1 and picked[0] != picked[1], picked

    with api(prefect_server) as c:  # at most one run at a time per tenant
        for name in ("acme", "beta.site_2"):
            limit = c.read_deployment_by_name(f"nightly/{name}").global_concurrency_limit
            assert limit is not None and limit.limit == 1, name
    run_id = acme.name.split("/")[-1]
    assert (
        f"run {run_id}: products_a.csv: applied"
        in (roots["acme"] / "state" / "cmi.log").read_text()
    )
    for name, run in (("acme", acme), ("beta.site_2", beta), ("served", served)):
        outbox = roots[name] / "outbox"
        summary = json.loads(
            (outbox / "reports" / run.name.split("/")[-1] / "run_summary.json").read_text()
        )
        assert summary["orchestrator"] == "prefect"
        want = reference(
            tmp_path / f"ref-{name}", nights[name], dt.datetime.fromisoformat(summary["as_of"])
        )
        assert outputs(outbox, summary["run_id"]) == want, name

    # a tenant removed from the file is paused; Prefect's own listings answer
    gamma = {"gamma": {**folders(tmp_path / "gamma"), "cron": "0 2 29 2 *"}}
    again = cmi(prefect_server, "deploy", "--tenants",
                str(tenants_file(tmp_path / "tenants.toml", gamma)), "--pool", "cmi")  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "deployment nightly/acme: paused (no longer in the tenants file)" in again.stdout
    with api(prefect_server) as c:
        paused = {d.name: d.paused for d in c.read_deployments()}
    assert paused["acme"] and paused["beta.site_2"] and not paused["gamma"]
    listing_env = prefect_server.env(COLUMNS="250")
    for cmd, needle in ((["flow-run", "ls"], "acme/"), (["flow", "ls"], "nightly"),
                        (["deployment", "ls"], "nightly/beta.site_2")):  # fmt: skip
        listed = subprocess.run([str(Path(sys.executable).with_name("prefect")), *cmd],
                                env=listing_env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert needle in listed.stdout, (cmd, listed.stdout)


# --------------------------------------------------------------------------- server down


def test_a_server_killed_before_a_run_means_an_in_process_night(
    postgres: Postgres, tmp_path: Path
) -> None:
    """A real Prefect server that answered, killed (SIGKILL to its process group, by PID)
    before the night: `cmi run` with PREFECT_API_URL still naming it runs in-process at
    once, with one warning line, and ends exactly as a night run without Prefect."""
    server = start_prefect_server(postgres, database_url=postgres.create_database("gone"))
    try:
        assert server.healthy()
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(30)
    finally:
        server.stop()
    files = night(5, serials=3_000, pools=1, bad_file=True)
    drop(tmp_path / "inbox", files)  # type: ignore[arg-type]
    (tmp_path / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")
    args = ["run", "--inbox", "inbox", "--outbox", "outbox", "--state", "state/cmi.duckdb",
            "--config", "cmi.toml", "--as-of", AS_OF]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=tmp_path,
                          env=server.env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    warning = (f"cmi: warning: the Prefect API at {server.api_url} refused the connection "
               "(is the server running?): the run went in-process (orchestrator: in-process)\n")  # fmt: skip
    assert done.stderr == warning  # one line, no traceback
    assert done.stdout.startswith("run 20261123T020000: 8 file(s)"), done.stdout
    assert took < 30 + 120, took  # a refused connection is not waited for (loaded machine)
    report = tmp_path / "outbox" / "reports" / "20261123T020000"
    summary = json.loads((report / "run_summary.json").read_text())
    assert summary["orchestrator"] == "in-process"
    note = warning.removeprefix("cmi: warning: ").rstrip("\n")
    assert summary["warnings"][0] == note
    assert note in (tmp_path / "state" / "cmi.log").read_text()
    want = reference(tmp_path / "ref", files, dt.datetime.fromisoformat(AS_OF))
    assert outputs(tmp_path / "outbox") == want  # the same night as without Prefect


# --------------------------------------------------------------------------- crash


def test_a_worker_killed_during_a_night_leaves_a_crashed_run_and_the_next_recovers(
    prefect_server: PrefectServer, killed_night: KilledNight, tmp_path: Path
) -> None:
    k = killed_night
    assert k.thread is not None
    k.thread.join(600)
    if k.error is not None:
        raise k.error
    assert len(k.killed) >= 2  # the worker and its flow run process
    deadline = time.monotonic() + 360
    with api(prefect_server) as c:
        while (state := c.read_flow_run(k.flow_run_id).state).type.value != "CRASHED":
            assert state.type.value == "RUNNING", state
            assert time.monotonic() < deadline, f"not marked Crashed\n{prefect_server.logs()}"
            time.sleep(3)
    assert "no heartbeat" in (state.message or "")
    start_worker(prefect_server, "crash", "wc2")
    with api(prefect_server) as c:
        deployment = c.read_deployment_by_name("nightly/crashy")
        nxt = c.create_flow_run_from_deployment(deployment.id, parameters={"as_of": AS_OF})
        deadline = time.monotonic() + 400
        while not (state := c.read_flow_run(nxt.id).state).is_final():
            assert time.monotonic() < deadline, (
                f"the next night did not end\n{prefect_server.logs()}"
            )
            time.sleep(2)
        name = c.read_flow_run(nxt.id).name
    assert state.is_completed(), (state, prefect_server.logs())
    assert name == "crashy/20261123T020000-2"  # the killed night had taken the run id
    # exactly the uninterrupted night: export files, partner answers, balances
    want = reference(tmp_path / "ref", k.files, dt.datetime.fromisoformat(AS_OF))
    got = outputs(k.root / "outbox")
    kept = ("serial_balance.csv", "exported_files.csv")
    assert {n: b for n, b in got.items() if "/" in n or n in kept} == {
        n: b for n, b in want.items() if "/" in n or n in kept
    }
    shutil.rmtree(k.root / "state", ignore_errors=True)
