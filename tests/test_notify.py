"""Notifications (SPEC §2 `[notify]`, §11) from real runs, received by a loopback HTTP
listener through Apprise's `json://`: one message for a run whose outcome is in `on`, with
tenant, run id, verdict, counts, warnings and where report.html is; a target that cannot
be reached is a warning of the run, never a failed run; a secret never shows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.faults import RunStopped
from flows.cli import app
from flows.pipeline import run_local
from tests.pipeline_helpers import csv, drop, paths_in
from tests.servers.common import free_port
from tests.servers.notify_listener import Listener
from transforms.context import Config, InboxConfig, NotifyConfig

AS_OF = dt.datetime(2026, 11, 23, 2, 0, 0)


def config(*urls: str, on: tuple[str, ...] = ("failure", "quarantine")) -> Config:
    return Config(inbox=InboxConfig(settle_seconds=0), notify=NotifyConfig(urls=urls, on=on))


def night(root: Path, *, bad_file: bool = False, bad_row: bool = False) -> None:
    files = {"products_a.csv": csv("product_code,product_name", "11223344556675,Demo",
                                   *(["1122334455667,Short code"] if bad_row else []))}  # fmt: skip
    if bad_file:
        files["what_is_this.csv"] = "a,b\n1,2\n"
    drop(root / "inbox", files)  # type: ignore[arg-type]


def summary_of(root: Path, run_id: str) -> dict[str, object]:
    path = root / "outbox" / "reports" / run_id / "run_summary.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_a_quarantined_file_sends_one_message(tmp_path: Path, notify_listener: Listener) -> None:
    night(tmp_path, bad_file=True)
    outline = run_local(paths_in(tmp_path), config(notify_listener.url), AS_OF)
    (message,) = notify_listener.wait_for(1)
    report = tmp_path / "outbox" / "reports" / outline["run_id"] / "report.html"
    assert message["title"] == "cmi: Needs attention — run 20261123T020000"
    body = message["message"]
    assert "run: 20261123T020000" in body and "verdict: Needs attention" in body
    assert "files: 2 seen, 1 applied, 0 duplicate, 1 quarantined" in body
    assert "needs a person: 1 file(s) quarantined" in body
    assert f"report: {report}" in body
    assert summary_of(tmp_path, outline["run_id"])["warnings"] == []


def test_a_night_outside_on_sends_nothing(tmp_path: Path, notify_listener: Listener) -> None:
    night(tmp_path, bad_row=True)  # a rejected row: not in the default `on`
    run_local(paths_in(tmp_path), config(notify_listener.url), AS_OF)
    assert notify_listener.wait_for(1, timeout=2) == []


def test_rejects_and_success_are_outcomes_one_can_ask_for(
    tmp_path: Path, notify_listener: Listener
) -> None:
    night(tmp_path, bad_row=True)
    run_local(paths_in(tmp_path), config(notify_listener.url, on=("rejects",)), AS_OF)
    (message,) = notify_listener.wait_for(1)
    assert "rows: 2 read, 1 applied, 1 rejected" in message["message"]
    run_local(paths_in(tmp_path), config(notify_listener.url, on=("success",)), AS_OF)
    first, second = notify_listener.wait_for(2)
    assert "verdict: All good" in second["message"]  # the second night is empty


def test_an_unreachable_target_is_a_warning_never_a_failed_run(
    tmp_path: Path, notify_listener: Listener
) -> None:
    night(tmp_path, bad_file=True)
    closed = free_port()
    urls = (f"json://ops:s3cret@127.0.0.1:{closed}/hook", notify_listener.url)
    outline = run_local(paths_in(tmp_path), config(*urls), AS_OF)
    assert outline["unexpected"] == []
    assert len(notify_listener.wait_for(1)) == 1  # the other target still hears
    warnings = summary_of(tmp_path, outline["run_id"])["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 1
    assert warnings[0].startswith(f"notification to json://ops:****@127.0.0.1:{closed}/hook")
    assert "could not be sent" in warnings[0]
    assert "s3cret" not in json.dumps(summary_of(tmp_path, outline["run_id"]))


def test_a_failed_run_sends_its_error(tmp_path: Path, notify_listener: Listener) -> None:
    """Exit 1 (the outbox cannot be written) with `failure` in `on`."""
    night(tmp_path)
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / "reports").write_text("a file where the reports folder should be")
    with pytest.raises(RunStopped):
        run_local(paths_in(tmp_path), config(notify_listener.url), AS_OF)
    (message,) = notify_listener.wait_for(1)
    assert message["title"] == "cmi: Failed — run 20261123T020000"
    assert "verdict: Failed" in message["message"]
    assert "error: RunStopped: run stopped: the outbox" in message["message"]


def test_a_url_apprise_does_not_know_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "cmi.toml").write_text('[notify]\nurls = ["nonsense://ops:pw@host/x"]\n')
    result = CliRunner().invoke(app, ["run", "--inbox", str(tmp_path / "in"), "--outbox",
                                      str(tmp_path / "out"), "--state", str(tmp_path / "s.duckdb"),
                                      "--config", str(tmp_path / "cmi.toml")])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "[notify] urls: nonsense://… is not a URL Apprise can send to" in result.output
    assert "pw" not in result.output
