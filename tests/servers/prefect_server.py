"""A real Prefect server on PostgreSQL and `prefect worker` processes for the tests.

`prefect server start` runs from the project's venv on a free loopback port with its
PREFECT_HOME in a temporary folder and its database in the session's private PostgreSQL
cluster (`tests/servers/postgres.py`); workers are `prefect worker start --pool NAME`
processes.  Everything is started in its own process group and stopped by PID.  The
benchmark (`bench/bench_tenants.py`) starts the same servers through these functions.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.servers.common import free_port, stop_process, tail
from tests.servers.postgres import Postgres

PREFECT = str(Path(sys.executable).with_name("prefect"))


def prefect_env(api_url: str | None, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a process that talks to the test server (never the user's profile)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_COLORS="false", PYTHONUNBUFFERED="1")  # fmt: skip
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


@dataclass
class PrefectServer:
    proc: subprocess.Popen[bytes]
    api_url: str
    home: Path
    log: Path
    workers: list[Worker] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return prefect_env(self.api_url, self.home, **extra)

    def healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.api_url}/health", timeout=5).status_code == 200
        return False

    def logs(self) -> str:
        """The server's and every worker's last log lines (for a failing test's output)."""
        parts = [f"--- prefect server ({self.log})\n{tail(self.log)}"]
        parts += [f"--- worker {w.name} ({w.log})\n{tail(w.log)}" for w in self.workers]
        return "\n".join(parts)

    def stop(self) -> None:
        for w in list(self.workers):
            w.stop()
        stop_process(self.proc, timeout=20)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    name: str
    pool: str
    log: Path

    def stop(self) -> None:
        """A worker needs two signals to exit (the first becomes a graceful SIGINT)."""
        if self.proc.poll() is None:
            for _ in range(2):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)
                    break
        stop_process(self.proc, timeout=10)


def start_prefect_server(
    pg: Postgres, timeout: float = 180, database_url: str | None = None
) -> PrefectServer:
    """`prefect server start` on `pg` (its `prefect` database, or `database_url`), answering
    /api/health before this returns."""
    home = Path(tempfile.mkdtemp(prefix="cmi-prefect-server-"))
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log = home / "server.log"
    env = prefect_env(None, home, PREFECT_API_DATABASE_CONNECTION_URL=database_url or pg.url,
                      PREFECT_UI_ENABLED="false", PREFECT_SERVER_API_HOST="127.0.0.1",
                      PREFECT_SERVER_API_PORT=str(port))  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port",
                                 str(port), "--no-ui"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    server = PrefectServer(proc, api_url, home, log)
    deadline = time.monotonic() + timeout
    while not server.healthy():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"the Prefect server did not start:\n{tail(log)}")
        time.sleep(0.3)
    return server


def start_worker(server: PrefectServer, pool: str, name: str, *, limit: int = 1) -> Worker:
    """`prefect worker start --pool POOL --limit 1`, as the README says (the pool exists:
    `cmi deploy` made it)."""
    log = server.home / f"worker-{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--name", name,
                                 "--limit", str(limit)],
                                env=server.env(PREFECT_WORKER_QUERY_SECONDS="3"),
                                stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    worker = Worker(proc, name, pool, log)
    server.workers.append(worker)
    return worker


def wait_for_workers_online(server: PrefectServer, pool: str, names: list[str],
                            timeout: float = 120) -> None:  # fmt: skip
    """Until every named worker of `pool` reports ONLINE to the server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.post(f"{server.api_url}/work_pools/{pool}/workers/filter", json={},
                           timeout=10)  # fmt: skip
            if r.status_code == 200:
                online = {w["name"] for w in r.json() if w.get("status") == "ONLINE"}
                if set(names) <= online:
                    return
        time.sleep(1)
    raise TimeoutError(f"workers {names} of pool {pool} not online:\n{server.logs()}")


@pytest.fixture(scope="session")
def prefect_server(postgres: Postgres) -> Iterator[PrefectServer]:
    """One real Prefect server on PostgreSQL for every end-to-end test of the session."""
    started = time.monotonic()
    server = start_prefect_server(postgres)
    print(f"Prefect server at {server.api_url} in {time.monotonic() - started:.1f} s")
    try:
        yield server
    finally:
        server.stop()
