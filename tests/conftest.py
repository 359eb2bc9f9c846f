"""Shared fixtures.  The Prefect harness is session-scoped and only starts when a test asks for it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests state rules, not speed: no per-example deadline (a loaded CI machine or a
# first import made examples "flaky" by timing alone); speed is measured in bench/.
settings.register_profile("cmi", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cmi")

# Prefect binds its console log handler to sys.stderr when its logging is first set up.
# Set it up now, on the real stream: if a CliRunner test (which swaps sys.stderr for a
# buffer it later closes) were first, later flow runs would log into a closed file.
from prefect.logging.configuration import setup_logging  # noqa: E402

setup_logging()

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# one module per real server the tests start (session-scoped fixtures)
pytest_plugins = [
    "tests.servers.chromium",
    "tests.servers.notify_listener",
    "tests.servers.postgres",
    "tests.servers.prefect_server",
    "tests.servers.sshd",
]


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session, with PREFECT_HOME in a temp folder."""
    home = tempfile.mkdtemp(prefix="cmi-prefect-")
    old = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = home
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
    if old is None:
        os.environ.pop("PREFECT_HOME", None)
    else:
        os.environ["PREFECT_HOME"] = old


# `make test` runs the tests on two processes (pytest-xdist, --dist loadgroup): the tests
# of one real server run in one process, so each server starts once per session.
_SERVER_GROUPS = {
    "test_prefect_e2e.py": "prefect-e2e",
    "test_golden_cases.py": "prefect-harness",
    "test_delivery_sftp.py": "sshd",
    "test_crash_delivery.py": "sshd",
    "test_redeliver.py": "sshd",
    "test_report_browser.py": "chromium",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = _SERVER_GROUPS.get(item.path.name)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
