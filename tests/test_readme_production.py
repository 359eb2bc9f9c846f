"""The README's production setup is commands that work (SPEC §11: 'With more than one worker,
the Prefect server keeps its data in PostgreSQL; the README shows that setup').

The `sh` block of README's "Running it in production" is run step by step as written —
its own PostgreSQL cluster (initdb, pg_ctl, psql), `prefect server start` on it, `cmi
deploy` of README's tenants file, `prefect worker start` — with only what a test must
change: the folders (/srv, /etc under a temporary folder), free loopback ports instead of
5432 and 4200, 127.0.0.1 for `prefect-host`.  Then a night of the deployed tenant, started
as a person would (`prefect deployment run nightly/acme`), must end Completed on a worker,
named after its run id, with its report.html written.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers.common import free_port, stop_process, tail
from tests.servers.prefect_server import prefect_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PROJECT = Path(__file__).resolve().parents[1]
_WAIT = 420.0  # generous: a loaded machine


def _production_section() -> tuple[str, str]:
    """README's tenants file and its sh block of commands."""
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Running it in production", 1)[1].split("\n### ", 1)[0]
    (toml,) = re.findall(r"```toml\n(.*?)```", section, re.S)[:1]
    (sh,) = re.findall(r"```sh\n(.*?)```", section, re.S)[:1]
    return toml, sh


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"README's production commands no longer contain {old!r}"
    return text.replace(old, new)


def _steps(sh: str, root: Path, pg_port: int, api_port: int) -> dict[int, str]:
    """The numbered steps (`# N. …`) of the block, with the test's folders and ports."""
    sh = _replace(sh, "/srv/pg", f"{root}/pg")
    sh = _replace(sh, "/srv/cmi", f"{root}/srv")
    sh = _replace(sh, "/etc/cmi", f"{root}/etc")
    sh = _replace(sh, f'-k {root}/pg"', f'-k {root}/pg -p {pg_port}"')
    sh = _replace(sh, f"psql -h {root}/pg", f"psql -h {root}/pg -p {pg_port}")
    sh = _replace(sh, "127.0.0.1:5432", f"127.0.0.1:{pg_port}")
    sh = _replace(sh, "--host 0.0.0.0 --port 4200", f"--host 127.0.0.1 --port {api_port}")
    sh = _replace(sh, "prefect-host:4200", f"127.0.0.1:{api_port}")
    if os.geteuid() != 0:  # the README is run as root; a developer's own cluster is theirs
        sh = sh.replace("runuser -u postgres -- ", "").replace("-o postgres -g postgres ", "")
    parts = re.split(r"^(?=# \d+\. )", sh, flags=re.M)
    return {int(p[2 : p.index(".")]): p for p in parts if p.startswith("# ")}


def _run(step: str, env: dict[str, str], what: str) -> str:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", step], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=_WAIT)  # fmt: skip
    assert done.returncode == 0, f"README step {what} failed:\n{step}\n{done.stdout}{done.stderr}"
    return done.stdout


def _start(step: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(["bash", "-euo", "pipefail", "-c", step], cwd=PROJECT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def _stop_twice(proc: subprocess.Popen[bytes]) -> None:
    """A Prefect worker needs two signals to exit (the first becomes a graceful SIGINT)."""
    for _ in range(2):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    stop_process(proc, timeout=10)


@pytest.fixture
def root() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="cmi-readme-"))
    folder.chmod(0o755)  # the postgres system user reaches its cluster's folder below
    try:
        yield folder
    finally:
        if (folder / "pg" / "data").exists():
            stop = ["pg_ctl", "-D", str(folder / "pg" / "data"), "-m", "fast", "-w", "stop"]
            prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            path = f"{os.environ.get('PATH', '')}:/usr/lib/postgresql/15/bin"
            subprocess.run(prefix + stop, capture_output=True, timeout=120,
                           env={**os.environ, "PATH": path})  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def _flow_runs(api_url: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        return list(c.read_flow_runs())


def test_the_readme_production_commands_run_a_tenants_night_on_a_worker(root: Path) -> None:
    toml, sh = _production_section()
    pg_port, api_port = free_port(), free_port()
    steps = _steps(sh, root, pg_port, api_port)
    assert sorted(steps) == [0, 1, 2, 3, 4], sorted(steps)
    env = prefect_env(None, root / "prefect-home")
    api_url = f"http://127.0.0.1:{api_port}/api"

    _run(steps[0], env, "0 (the tenant's folders)")
    tenants = root / "etc" / "tenants.toml"
    tenants.write_text(_replace(toml, "/srv/cmi", f"{root}/srv"))
    _run(steps[1], env, "1 (PostgreSQL)")
    server = _start(steps[2], env, root / "server.log")
    worker: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + _WAIT
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api_url}/health", timeout=5).status_code == 200:
                    break
            assert server.poll() is None and time.monotonic() < deadline, (
                f"README step 2: the Prefect server did not start\n{tail(root / 'server.log')}"
            )
            time.sleep(0.5)
        deployed = _run(steps[3], env, "3 (cmi deploy)")
        assert "deployment nightly/acme: '0 2 * * *' in Europe/Berlin, pool 'cmi'" in deployed

        inbox = root / "srv" / "acme" / "inbox"
        (inbox / "products_a.csv").write_text("product_code,product_name\n11223344556675,Demo\n")
        (inbox / "cmos_a.csv").write_text(
            "cmo_id,cmo_name,city,country,produceable_products\n"
            "ACME-01,Acme,Basel,CH,11223344556675\n"
        )
        for f in inbox.iterdir():  # settled (the tenant's cmi.toml is empty: 5 s)
            os.utime(f, (time.time() - 60, time.time() - 60))
        worker = _start(steps[4], env, root / "worker.log")
        started = subprocess.run(
            [str(PROJECT / ".venv" / "bin" / "prefect"), "deployment", "run", "nightly/acme"],
            cwd=PROJECT, env={**env, "PREFECT_API_URL": api_url}, capture_output=True,
            text=True, timeout=_WAIT,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr

        deadline = time.monotonic() + _WAIT
        while not [r for r in _flow_runs(api_url) if r.state and r.state.is_final()]:
            assert time.monotonic() < deadline, (
                f"no night ended\n{tail(root / 'server.log')}\n{tail(root / 'worker.log')}"
            )
            time.sleep(2)
        (run,) = [r for r in _flow_runs(api_url) if r.state and r.state.is_final()]
        assert run.state.is_completed(), (run.state, tail(root / "worker.log"))
        assert run.name.startswith("acme/"), run.name
        report = root / "srv" / "acme" / "outbox" / "reports" / run.name.split("/", 1)[1]
        assert (report / "report.html").is_file() and (report / "report.xlsx").is_file()
        assert sorted(p.name for p in (inbox / "archive").rglob("*.csv")) == [
            "cmos_a.csv", "products_a.csv"
        ]  # fmt: skip
    finally:
        if worker is not None:
            _stop_twice(worker)
        stop_process(server, timeout=20)
