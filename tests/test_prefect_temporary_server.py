"""`cmi run --prefect` without PREFECT_API_URL runs on Prefect's temporary server, and waits
for it as SPEC §11 says — 30 s before the night goes in-process — not Prefect's own 20 s,
which a first start on a busy machine overran (load 15: the night went in-process after
Prefect gave up on its new server); a timeout the user set is kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.prefect_server import prefect_env

PROJECT = Path(__file__).resolve().parents[1]
PROBE = """
from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as S
from flows.prefect_run import temporary_server_waits
with temporary_server_waits():
    inside = S.value()
print(inside, S.value())
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "30 20"), ("45", "45 45")])
def test_the_temporary_server_is_waited_for_30_s_unless_the_user_says(
    tmp_path: Path, given: str | None, expected: str
) -> None:
    extra = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": given} if given else {}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=PROJECT, capture_output=True,
                          text=True, timeout=300, env=prefect_env(None, tmp_path, **extra))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == expected.split()
