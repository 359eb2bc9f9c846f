"""The orchestrator never costs a night (SPEC §11): `cmi run` with a Prefect API that does not
answer runs in-process, says so on the console and in run_summary.json; `cmi serve` and
`cmi deploy` without a server exit 2 and say how to start one.  No server is needed here:
what answers nothing is a free port, or a listener that accepts and never replies."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.prefect_run import API_TIMEOUT_S, api_answers
from tests.pipeline_helpers import csv, drop
from tests.servers.common import free_port

runner = CliRunner()


def _run_args(root: Path, *extra: str) -> list[str]:
    return ["run", "--inbox", str(root / "in"), "--outbox", str(root / "out"), "--state",
            str(root / "st" / "cmi.duckdb"), "--config", str(root / "cmi.toml"),
            "--as-of", "2026-11-23T02:00:00", *extra]  # fmt: skip


def _night(root: Path) -> None:
    drop(root / "in", {"products_a.csv": csv("product_code,product_name", "11223344556675,Demo",
                                             "1122334455667,Short")})  # fmt: skip
    (root / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")


def _outputs(root: Path) -> dict[str, bytes]:
    reports = root / "out" / "reports" / "20261123T020000"
    return {p.name: p.read_bytes() for p in sorted(reports.glob("*.csv"))}


def test_a_server_that_is_down_means_an_in_process_night(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", down)
    _night(tmp_path / "a")
    started = time.monotonic()
    result = runner.invoke(app, _run_args(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < API_TIMEOUT_S  # a refused connection is not waited for
    assert f"cmi: warning: the Prefect API at {down} refused the connection" in result.output
    assert "went in-process" in result.output and "Traceback" not in result.output
    summary = json.loads((tmp_path / "a" / "out" / "reports" / "20261123T020000" /
                          "run_summary.json").read_text())  # fmt: skip
    assert summary["orchestrator"] == "in-process"
    assert summary["warnings"][0].startswith(f"the Prefect API at {down} refused")
    monkeypatch.delenv("PREFECT_API_URL")
    _night(tmp_path / "b")
    plain = runner.invoke(app, _run_args(tmp_path / "b"))
    assert plain.exit_code == 0, plain.output
    assert _outputs(tmp_path / "a") == _outputs(tmp_path / "b")  # the same night


def test_an_api_that_does_not_answer_is_waited_for_until_the_timeout() -> None:
    """A server that accepts and never replies (hung, or a black-holed address)."""
    assert API_TIMEOUT_S == 30
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        why = api_answers(f"http://127.0.0.1:{port}/api", timeout=1.5)
        waited = time.monotonic() - started
    assert why is not None and why.startswith("did not answer within 1.5 s")
    assert 1.4 <= waited < 10


@pytest.mark.parametrize("command", [["serve", "--cron", "* * * * *"],
                                     ["deploy", "--tenants", "TENANTS"]])  # fmt: skip
def test_serve_and_deploy_without_a_server_are_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    (tmp_path / "tenants.toml").write_text(
        '[tenants.acme]\ninbox = "i"\noutbox = "o"\nstate = "s/cmi.duckdb"\n'
    )
    args = [str(tmp_path / "tenants.toml") if a == "TENANTS" else a for a in command]
    down = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", down)
    (tmp_path / "in").mkdir()
    result = runner.invoke(app, [*args, *(["--state", str(tmp_path / "s.duckdb"), "--inbox",
                                           str(tmp_path / "in")]
                                          if command[0] == "serve" else [])])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"the Prefect server at {down} refused the connection" in result.output
    assert "prefect server start" in result.output and "PREFECT_API_URL=" in result.output
    assert "Traceback" not in result.output


def test_serve_without_any_server_configured_is_exit_2(tmp_path: Path) -> None:
    """No PREFECT_API_URL at all: Prefect's temporary server cannot schedule anything."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / "p")}
    (tmp_path / "in").mkdir()
    result = subprocess.run([sys.executable, "-m", "flows.cli", "serve", "--state",
                             str(tmp_path / "s.duckdb"), "--inbox", str(tmp_path / "in")],
                            env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no Prefect server is configured (PREFECT_API_URL is not set)" in result.stderr
    assert "prefect server start" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_serve_rejects_a_bad_time_zone(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--timezone", "Mars/Olympus", "--state",
                                 str(tmp_path / "s.duckdb")])  # fmt: skip
    assert result.exit_code == 2 and "unknown time zone 'Mars/Olympus'" in result.output


def test_a_cmi_run_flow_run_sends_heartbeats_only_when_asked(tmp_path: Path) -> None:
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    from flows.prefect_run import _no_heartbeat_unless_asked

    before = get_current_settings().flows.heartbeat_frequency
    assert before is not None  # Prefect's default sends them
    with _no_heartbeat_unless_asked():
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == before
    with (
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 45}),
        _no_heartbeat_unless_asked(),  # the user's choice stands
    ):
        assert get_current_settings().flows.heartbeat_frequency == 45
    # set by the old variable's name, or in the Prefect profile: it stands too
    show = ("from prefect.settings import get_current_settings as s\n"
            "from flows.prefect_run import _no_heartbeat_unless_asked as n\n"
            "with n(): print(s().flows.heartbeat_frequency)")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    home = tmp_path / "prefect"
    subprocess.run([str(Path(sys.executable).with_name("prefect")), "config", "set",
                    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY=90"], env={**env, "PREFECT_HOME": str(home)},
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    for extra, want in (({"PREFECT_RUNNER_HEARTBEAT_FREQUENCY": "60"}, "60"),
                        ({"PREFECT_HOME": str(home)}, "90")):  # fmt: skip
        done = subprocess.run([sys.executable, "-c", show], env={**env, **extra},
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.stdout.strip().splitlines()[-1:] == [want], done.stdout + done.stderr
