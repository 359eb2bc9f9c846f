"""Tenants benchmark (issue 14, SPEC §11): four tenants' nights through a real Prefect server
and workers, with one worker and then with two, in the same run.

Each tenant has its own folders and state store and the same realistic night
(`bench/tenant_night.py`: at scale 1 a 2M-serial pool, assignments, exports, a
200k-SGTIN shipping document, 100k order lines).  The server is `prefect server start`
on a private PostgreSQL cluster and the workers are `prefect worker start --pool bench
--limit 1` (started as the tests start them: `tests/servers/`); the tenants are
registered with `cmi deploy`.  A round starts the four tenants' flow runs at once and
ends when the last one has ended; rounds with one and with two workers alternate
(`--reps`), and the medians are compared: the speedup is one-worker wall / two-workers
wall.

The fixed cost of Prefect: `cmi run` over an empty inbox through the server against
`cmi run --no-prefect`, each a fresh command as cron or an operator starts it,
alternating, medians (`prefect_overhead_s`: Prefect's imports included); and the same
inside one process after its imports (`prefect_overhead_after_imports_s`: the flow run's
own API calls).  The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.tenant_night import write_night
from tests.servers.postgres import start_postgres
from tests.servers.prefect_server import (
    PrefectServer,
    start_prefect_server,
    start_worker,
    wait_for_workers_online,
)

AS_OF = "2026-11-23T02:00:00"
POOL = "bench"


def _cmi(server: PrefectServer, *args: str, prefect: bool = True) -> float:
    """Run one `cmi` command; its wall time (it must succeed)."""
    env = server.env() if prefect else {k: v for k, v in server.env().items()
                                        if k != "PREFECT_API_URL"}  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env,
                          capture_output=True, text=True, timeout=3600)  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"cmi {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return wall


def _reset(template: Path, roots: list[Path]) -> None:
    """Every tenant starts from the same inbox, an empty outbox and no state store."""
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(template, root / "inbox")
        past = time.time() - 3600  # settled long ago
        for p in (root / "inbox").iterdir():
            os.utime(p, (past, past))


def _round(server: PrefectServer, names: list[str], roots: list[Path], template: Path,
           workers: int, tag: str) -> float:  # fmt: skip
    """Start every tenant's night at once; seconds until the last one has ended."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _reset(template, roots)
    started = [start_worker(server, POOL, f"{tag}-w{i}") for i in range(workers)]
    try:
        wait_for_workers_online(server, POOL, [w.name for w in started], timeout=300)
        with (
            temporary_settings({PREFECT_API_URL: server.api_url}),
            get_client(sync_client=True) as c,
        ):
            t0 = time.perf_counter()
            runs = [c.create_flow_run_from_deployment(
                        c.read_deployment_by_name(f"nightly/{n}").id, parameters={"as_of": AS_OF})
                    for n in names]  # fmt: skip
            pending = {r.id for r in runs}
            while pending:
                for rid in list(pending):
                    state = c.read_flow_run(rid).state
                    if state is not None and state.is_final():
                        if not state.is_completed():
                            raise RuntimeError(f"a night ended {state.name}: {state.message}\n{server.logs()}")  # fmt: skip
                        pending.discard(rid)
                time.sleep(0.5)
            wall = time.perf_counter() - t0
    finally:
        for w in started:
            w.stop()
            server.workers.remove(w)
    for root in roots:
        latest = (root / "outbox" / "reports" / "LATEST").read_text().strip()
        summary = json.loads(
            (root / "outbox" / "reports" / latest / "run_summary.json").read_text()
        )
        totals = summary["totals"]
        assert summary["orchestrator"] == "prefect" and totals["rows_rejected"] == 0, totals
        assert totals["files_applied"] == totals["files_seen"], summary["files"]
    return wall


def _overhead(server: PrefectServer, work: Path, reps: int) -> tuple[float, float, float]:
    """Medians of `cmi run` over an empty inbox in-process and through Prefect (alternating)."""
    empty = work / "empty"
    (empty / "inbox").mkdir(parents=True, exist_ok=True)
    args = ["run", "--inbox", str(empty / "inbox"), "--outbox", str(empty / "outbox"),
            "--state", str(empty / "state" / "cmi.duckdb")]  # fmt: skip
    _cmi(server, *args, "--no-prefect")  # warm the disk caches for both
    _cmi(server, *args, "--prefect")
    local, through = [], []
    for _ in range(reps):
        local.append(_cmi(server, *args, "--no-prefect", prefect=False))
        through.append(_cmi(server, *args, "--prefect"))
    a, b = statistics.median(local), statistics.median(through)
    return a, b, b - a


_IN_ONE_PROCESS = r"""
import datetime as dt, json, statistics, sys, time
from pathlib import Path
from flows.pipeline import RunPaths, run_local
from flows import nightly
from flows.prefect_run import prefect_console_to_log
from transforms.context import Config
root, reps = Path(sys.argv[1]), int(sys.argv[2])
(root / "inbox").mkdir(parents=True, exist_ok=True)
prefect_console_to_log(root / "prefect.log")
paths = RunPaths(root / "inbox", root / "outbox", root / "state" / "cmi.duckdb")
local, through = [], []
for i in range(reps + 1):  # the first pair warms up
    t0 = time.perf_counter()
    run_local(paths, Config(), dt.datetime(2026, 11, 23, 2, 0, i))
    t1 = time.perf_counter()
    state = nightly.nightly(str(paths.inbox), str(paths.outbox), str(paths.state), None,
                            f"2026-11-24T02:00:{i:02d}", return_state=True)
    t2 = time.perf_counter()
    assert state.is_completed(), state
    if i:
        local.append(t1 - t0)
        through.append(t2 - t1)
print(json.dumps([statistics.median(local), statistics.median(through)]))
"""


def _overhead_after_imports(server: PrefectServer, work: Path, reps: int) -> tuple[float, float]:
    """The same, inside one process after its imports: the orchestration's own cost."""
    done = subprocess.run([sys.executable, "-c", _IN_ONE_PROCESS, str(work / "empty2"), str(reps)],
                          env=server.env(), capture_output=True, text=True, timeout=3600)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    local, through = json.loads(done.stdout.strip().splitlines()[-1])
    return float(local), float(through)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size of each night (1 = full)")
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--reps", type=int, default=1, help="rounds of each worker count")
    parser.add_argument("--overhead-reps", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores", flush=True)
    work = Path(tempfile.mkdtemp(prefix="cmi-bench-tenants-"))
    pg = server = None
    try:
        sizes = write_night(work / "template", args.scale)
        print(f"night: {sizes}", flush=True)
        pg = start_postgres()
        server = start_prefect_server(pg)
        names = [f"t{i}" for i in range(1, args.tenants + 1)]
        roots = [work / n for n in names]
        lines = []
        for n, root in zip(names, roots, strict=True):
            lines += [f"[tenants.{n}]", f'inbox = "{root / "inbox"}"',
                      f'outbox = "{root / "outbox"}"', f'state = "{root / "state" / "cmi.duckdb"}"',
                      'cron = "0 2 29 2 *"']  # fmt: skip
        (work / "tenants.toml").write_text("\n".join(lines) + "\n")
        _cmi(server, "deploy", "--tenants", str(work / "tenants.toml"), "--pool", POOL)
        walls: dict[int, list[float]] = {1: [], 2: []}
        for rep in range(args.reps):
            for workers in (1, 2):
                wall = _round(server, names, roots, work / "template", workers, f"r{rep}n{workers}")
                walls[workers].append(wall)
                print(f"{args.tenants} nights, {workers} worker(s): {wall:.1f} s "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)  # fmt: skip
        local, through, overhead = _overhead(server, work, args.overhead_reps)
        print(f"empty night, a fresh `cmi run`: in-process {local:.2f} s, through Prefect "
              f"{through:.2f} s (medians of {args.overhead_reps})", flush=True)  # fmt: skip
        in_local, in_through = _overhead_after_imports(server, work, args.overhead_reps)
        print(f"empty night after the imports: run_local {in_local:.2f} s, flow nightly "
              f"{in_through:.2f} s", flush=True)  # fmt: skip
    finally:
        if server is not None:
            server.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    result: dict[str, Any] = {
        "bench": "tenants", "one_worker_s": round(one, 2), "two_workers_s": round(two, 2),
        "speedup": round(one / two, 2), "prefect_overhead_s": round(overhead, 2),
        "prefect_overhead_after_imports_s": round(in_through - in_local, 2),
        "tenants": args.tenants, "scale": args.scale, "load_1min": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
