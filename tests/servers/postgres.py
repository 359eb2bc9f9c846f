"""A private PostgreSQL 15 cluster for the tests: a temporary folder, a free loopback port,
stopped by `pg_ctl` (its PID) at the end of the session.

`initdb` refuses to run as root: when the tests run as root the cluster belongs to the
`postgres` system user (`runuser -u postgres --`), and its folder is owned by that user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.common import free_port, tail, wait_for_port


@dataclass
class Postgres:
    """A running cluster: `url` is the SQLAlchemy URL of its `prefect` database (asyncpg)."""

    folder: Path
    port: int
    url: str
    log: Path

    def create_database(self, name: str) -> str:
        """One more database owned by `prefect` (a second server's); its SQLAlchemy URL."""
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "-v", "ON_ERROR_STOP=1", "-c", f"CREATE DATABASE {name} OWNER prefect"],
                       check=True, capture_output=True, text=True, timeout=120)  # fmt: skip
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        _as_owner(["pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop"],
                  check=False)  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


def _as_owner(cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the cluster's owner (`postgres` when we are root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + cmd, check=check, capture_output=True, text=True, timeout=120)


def start_postgres() -> Postgres:
    """initdb + pg_ctl start on a free port; a `prefect` role owning a `prefect` database."""
    folder = Path(tempfile.mkdtemp(prefix="cmi-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, log = folder / "data", folder / "postgres.log"
    port = free_port()
    try:
        _as_owner(["initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        _as_owner(["pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "120", "-o",
                   f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200",
                   "start"])  # fmt: skip
        wait_for_port(port, 60)
        for sql in ("CREATE ROLE prefect LOGIN PASSWORD 'prefect'",
                    "CREATE DATABASE prefect OWNER prefect"):  # fmt: skip
            subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                            "-v", "ON_ERROR_STOP=1", "-c", sql],
                           check=True, capture_output=True, text=True, timeout=60)  # fmt: skip
    except (subprocess.CalledProcessError, OSError, TimeoutError) as err:
        detail = getattr(err, "stderr", "") or ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {err}\n{detail}\n{tail(log)}") from err
    url = f"postgresql+asyncpg://prefect:prefect@127.0.0.1:{port}/prefect"
    return Postgres(folder, port, url, log)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    started = time.monotonic()
    pg = start_postgres()
    print(f"PostgreSQL on 127.0.0.1:{pg.port} in {time.monotonic() - started:.1f} s")
    try:
        yield pg
    finally:
        pg.stop()
