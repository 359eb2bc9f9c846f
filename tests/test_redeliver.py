"""`cmi redeliver FILE_NAME…` (SPEC §1, §8, §8.1): recorded files written and delivered again
on request; exit 2 for a name that is no recorded file (named, nothing changed); exit 3 while
a run holds the store (naming the latest completed run's report folder)."""

from __future__ import annotations

from pathlib import Path

import duckdb
from typer.testing import CliRunner

from connectors.store import open_store
from flows.cli import app
from tests.delivery_helpers import config, day_one, exported, files_in, folder_target, marks, night
from tests.servers.sshd import SshServer
from transforms.context import DeliveryTarget

runner = CliRunner()
DAY1 = "2026-11-23T02:00:00"


def _day(root: Path, drop: Path) -> Path:
    """Day one delivered to `drop` (ACME) with a cmi.toml saying so; returns the cmi.toml."""
    drop.mkdir(parents=True, exist_ok=True)
    night(root, DAY1, config(folder_target("ACME", drop)), day_one())
    toml = root / "cmi.toml"
    toml.write_text(f'[delivery.ACME]\nurl = "file://{drop}"\n')
    return toml


def _redeliver(root: Path, toml: Path | None, *names: str) -> tuple[int, str]:
    extra = ["--config", str(toml)] if toml else []
    result = runner.invoke(app, ["redeliver", "--state", str(root / "state" / "cmi.duckdb"),
                                 "--outbox", str(root / "outbox"), *extra, *names])  # fmt: skip
    return result.exit_code, result.output


def _recorded(root: Path) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(root / "state" / "cmi.duckdb"))
    try:
        return con.execute("SELECT * FROM outbox_files ORDER BY file_id").fetchall()
    finally:
        con.close()


def test_a_file_the_cmo_lost_is_written_and_delivered_again(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    toml = _day(tmp_path, drop)
    sent = exported(tmp_path, "ACME")
    name = sorted(sent)[0]
    (drop / name).unlink()  # the CMO lost it
    (
        tmp_path / "outbox" / "serials" / "ACME" / name
    ).unlink()  # and the outbox's copy was picked up
    code, out = _redeliver(tmp_path, toml, name)
    assert code == 0, out
    assert f"written: {tmp_path / 'outbox' / 'serials' / 'ACME' / name}" in out
    assert f"delivered: {name} to file://{drop}" in out
    assert files_in(drop) == sent and exported(tmp_path, "ACME") == sent
    assert marks(tmp_path)[name][2] == 2  # its second delivery
    # a later run does not deliver it a third time
    s = night(tmp_path, "2026-11-24T02:00:00", config(folder_target("ACME", drop)))
    assert s["rows"] == []


def test_a_file_still_on_the_server_is_found_there_not_overwritten(
    tmp_path: Path, sshd_server: SshServer
) -> None:
    url = sshd_server.url("acme-redeliver")
    target = DeliveryTarget("ACME", url, key_file=str(sshd_server.user_key),
                            known_hosts=str(sshd_server.known_hosts))  # fmt: skip
    night(tmp_path, DAY1, config(target), day_one())
    toml = tmp_path / "cmi.toml"
    toml.write_text(f'[delivery.ACME]\nurl = "{url}"\nkey_file = "{sshd_server.user_key}"\n'
                    f'known_hosts = "{sshd_server.known_hosts}"\n')  # fmt: skip
    name = sorted(exported(tmp_path, "ACME"))[1]
    code, out = _redeliver(tmp_path, toml, f"serials/ACME/{name}")
    assert code == 0, out
    assert f"delivered: {name} to {url} (it was already there)" in out
    assert sshd_server.uploads()[str(sshd_server.root / "acme-redeliver" / name)] == 1


def test_a_name_that_is_no_recorded_file_is_exit_2_and_changes_nothing(tmp_path: Path) -> None:
    toml = _day(tmp_path, tmp_path / "drop")
    name = sorted(exported(tmp_path, "ACME"))[0]
    before = _recorded(tmp_path)
    code, out = _redeliver(tmp_path, toml, name, "no_such_file.csv")
    assert code == 2
    assert "'no_such_file.csv' is not a recorded export file or partner answer" in out
    assert "Traceback" not in out
    assert _recorded(tmp_path) == before


def test_a_name_two_cmos_share_is_exit_2_asking_for_the_path(tmp_path: Path) -> None:
    # two CMOs with the same name get export files of the same name, in their own folders
    files = day_one({"ACME": [10], "BETA": [10]})
    files["cmos_a.csv"] = files["cmos_a.csv"].replace("Beta Labs", "Acme Pharma")  # type: ignore[union-attr]
    night(tmp_path, DAY1, config(), files)
    (name,) = exported(tmp_path, "ACME")
    assert name in exported(tmp_path, "BETA")
    code, out = _redeliver(tmp_path, None, name)
    assert code == 2 and f"serials/ACME/{name}" in out and f"serials/BETA/{name}" in out
    code, out = _redeliver(tmp_path, None, f"serials/BETA/{name}")
    assert code == 0, out


def test_while_a_run_holds_the_store_redeliver_is_exit_3_naming_the_latest_reports(
    tmp_path: Path,
) -> None:
    toml = _day(tmp_path, tmp_path / "drop")
    latest = (tmp_path / "outbox" / "reports" / "LATEST").read_text()
    store = open_store(tmp_path / "state" / "cmi.duckdb")
    try:
        code, out = _redeliver(tmp_path, toml, sorted(exported(tmp_path, "ACME"))[0])
    finally:
        store.close()
    assert code == 3, out
    assert str((tmp_path / "outbox" / "reports" / latest).resolve()) in out


def test_a_delivery_that_fails_is_exit_1_and_stays_pending(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    toml = _day(tmp_path, drop)
    name = sorted(exported(tmp_path, "ACME"))[0]
    drop.rename(tmp_path / "gone")
    code, out = _redeliver(tmp_path, toml, name)
    assert code == 1
    assert f"{name} could not be delivered" in out and "stays pending" in out
    assert marks(tmp_path)[name][0] is None
    (tmp_path / "gone").rename(drop)
    (drop / name).unlink()
    s = night(tmp_path, "2026-11-24T02:00:00", config(folder_target("ACME", drop)))
    assert [(r["file_name"], r["outcome"]) for r in s["rows"]] == [(name, "delivered")]


def test_without_a_state_store_redeliver_is_exit_2(tmp_path: Path) -> None:
    code, out = _redeliver(tmp_path, None, "x.csv")
    assert code == 2 and "no state store" in out


def test_cmi_run_says_what_was_delivered_and_what_is_pending(tmp_path: Path) -> None:
    from tests.pipeline_helpers import drop as drop_files

    drop_files(tmp_path / "inbox", day_one())
    (tmp_path / "cmi.toml").write_text(
        f'[inbox]\nsettle_seconds = 0\n[delivery.ACME]\nurl = "file://{tmp_path / "missing"}"\n'
    )
    result = runner.invoke(app, ["run", "--inbox", str(tmp_path / "inbox"), "--outbox",
                                 str(tmp_path / "outbox"), "--state", str(tmp_path / "state" / "cmi.duckdb"),
                                 "--config", str(tmp_path / "cmi.toml"), "--as-of", DAY1, "--no-prefect"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "deliveries: 0 delivered, 0 already there, 2 failed, 2 pending" in result.output
    assert "delivery to CMO ACME" in result.output and "does not exist" in result.output
