"""Delivery to a real OpenSSH server (SPEC §8.1): each fault leaves nothing lost and nothing
sent twice.  The server's SFTP log (`-l INFO`) counts the uploads: every final name is made
by exactly one rename from its `.part` name, and no final name is ever opened for writing."""

from __future__ import annotations

import csv as csvlib
import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import delivery as delivery_io
from tests.delivery_helpers import (
    config,
    day_one,
    exported,
    files_in,
    forget_delivered,
    marks,
    more_exports,
    night,
)
from tests.mounts import tmpfs
from tests.servers.sshd import SshServer
from transforms.context import DeliveryTarget

pytestmark = pytest.mark.e2e

DAY1, DAY2, DAY3 = "2026-11-23T02:00:00", "2026-11-24T02:00:00", "2026-11-25T02:00:00"


def _target(server: SshServer, folder: str, **kw: str) -> DeliveryTarget:
    options = {"key_file": str(server.user_key), "known_hosts": str(server.known_hosts), **kw}
    return DeliveryTarget("ACME", server.url(folder), **options)  # type: ignore[arg-type]


def _made_once(server: SshServer, folder: Path, names: list[str]) -> None:
    """Each name made exactly once on the server, always by a rename from `.part`."""
    made = server.uploads()
    assert [made.get(str(folder / n), 0) for n in names] == [1] * len(names), made
    written = [p for p in server.opened_for_writing() if p.startswith(f"{folder}/")]
    assert all(Path(p).name.startswith(".") and p.endswith(".part") for p in written), written


def test_files_are_uploaded_under_a_temporary_name_renamed_and_marked(
    tmp_path: Path, sshd_server: SshServer
) -> None:
    target = _target(sshd_server, "acme-ok")
    folder = sshd_server.root / "acme-ok"
    s = night(tmp_path, DAY1, config(target), day_one())
    sent = exported(tmp_path, "ACME")
    assert files_in(folder) == sent
    assert [(r["outcome"], r["attempts"], r["delivered_at"]) for r in s["rows"]] == [
        ("delivered", "1", DAY1)] * 2  # fmt: skip
    assert {r["url"] for r in s["rows"]} == {target.url}
    assert s["deliveries"] == {"delivered": 2, "already_there": 0, "failed": 0, "pending": 0}
    assert {marks(tmp_path)[n][:2] for n in sent} == {("2026-11-23 02:00:00", target.url)}
    _made_once(sshd_server, folder, list(sent))
    # later nights: nothing is uploaded again, new files are
    s = night(tmp_path, DAY2, config(target), more_exports("exports_b.csv", [("ACME", 7)]))
    assert [r["outcome"] for r in s["rows"]] == ["delivered"]
    assert files_in(folder) == exported(tmp_path, "ACME")
    _made_once(sshd_server, folder, list(exported(tmp_path, "ACME")))


def test_a_server_down_for_a_night_gets_the_files_the_next_night(
    tmp_path: Path, sshd_server: SshServer
) -> None:
    target = _target(sshd_server, "acme-down")
    folder = sshd_server.root / "acme-down"
    sshd_server.stop()
    try:
        s = night(tmp_path, DAY1, config(target), day_one())
    finally:
        sshd_server.start()
    assert [(r["outcome"], r["delivered_at"]) for r in s["rows"]] == [("failed", "")] * 2
    assert all("connection refused" in r["message"] for r in s["rows"]), s["rows"]
    assert s["deliveries"] == {"delivered": 0, "already_there": 0, "failed": 2, "pending": 2}
    assert any("stay pending" in w for w in s["warnings"])
    assert exported(tmp_path, "ACME"), "the run itself completed: exports written"
    s = night(tmp_path, DAY2, config(target))
    assert [(r["outcome"], r["attempts"], r["delivered_at"]) for r in s["rows"]] == [
        ("delivered", "2", DAY2)] * 2  # fmt: skip
    assert files_in(folder) == exported(tmp_path, "ACME")
    _made_once(sshd_server, folder, list(exported(tmp_path, "ACME")))


def test_a_refused_login_is_a_failed_delivery(tmp_path: Path, sshd_server: SshServer) -> None:
    wrong = _target(sshd_server, "acme-key", key_file=str(sshd_server.other_key))
    s = night(tmp_path, DAY1, config(wrong), day_one())
    assert {r["outcome"] for r in s["rows"]} == {"failed"}
    assert all("refused the login" in r["message"] for r in s["rows"]), s["rows"]
    assert files_in(sshd_server.root / "acme-key") == {}
    s = night(tmp_path, DAY2, config(_target(sshd_server, "acme-key")))
    assert [(r["outcome"], r["attempts"]) for r in s["rows"]] == [("delivered", "2")] * 2


@pytest.mark.parametrize("case", ["unknown", "changed"])
def test_a_host_key_not_listed_in_known_hosts_is_refused(
    tmp_path: Path, sshd_server: SshServer, case: str
) -> None:
    known = tmp_path / "known_hosts"
    # unknown: known_hosts lists another host only; changed: this address with another key
    known.write_text(
        "[127.0.0.1]:1 " + " ".join(sshd_server.known_hosts_line().split()[1:]) + "\n"
        if case == "unknown"
        else sshd_server.known_hosts_line(sshd_server.other_key)
    )
    folder = f"acme-hostkey-{case}"
    s = night(
        tmp_path, DAY1, config(_target(sshd_server, folder, known_hosts=str(known))), day_one()
    )
    assert {r["outcome"] for r in s["rows"]} == {"failed"}
    expected = "not listed" if case == "unknown" else "not the one listed"
    assert all(expected in r["message"] and "refused" in r["message"] for r in s["rows"]), s["rows"]
    assert files_in(sshd_server.root / folder) == {}
    assert s["deliveries"]["pending"] == 2


def test_a_full_disk_on_the_server_fails_what_does_not_fit_then_delivers_it(
    tmp_path: Path, sshd_server: SshServer
) -> None:
    target = _target(sshd_server, "acme-full")
    with tmpfs(sshd_server.root / "acme-full", "160k") as share:
        s = night(tmp_path, DAY1, config(target), day_one({"ACME": [5000, 3000], "BETA": [1]}))
        big, small = sorted(exported(tmp_path, "ACME"), key=lambda n: "_3000_" in n)
        assert [(r["file_name"], r["outcome"]) for r in s["rows"]] == [
            (big, "delivered"), (small, "failed")]  # fmt: skip
        assert "is full" in s["rows"][1]["message"], s["rows"]
        assert sorted(files_in(share)) == [big], "no partial file left, under any name"
        (share / big).unlink()  # the CMO picked it up
        s = night(tmp_path, DAY2, config(target))
        assert [(r["file_name"], r["outcome"], r["attempts"]) for r in s["rows"]] == [
            (small, "delivered", "2")]  # fmt: skip
        assert files_in(share) == {small: exported(tmp_path, "ACME")[small]}
        _made_once(sshd_server, share, [big, small])


def test_a_different_file_under_the_final_name_is_a_conflict_never_overwritten(
    tmp_path: Path, sshd_server: SshServer
) -> None:
    target = _target(sshd_server, "acme-conflict")
    folder = sshd_server.root / "acme-conflict"
    night(tmp_path / "probe", DAY1, config(), day_one())
    first, second = sorted(exported(tmp_path / "probe", "ACME"))
    # the same size, one byte different: only the SHA-256 tells them apart
    ours = exported(tmp_path / "probe", "ACME")[first]
    (folder / first).write_bytes(ours[:-2] + b"X\n")
    s = night(tmp_path, DAY1, config(target), day_one())
    by_name = {r["file_name"]: r for r in s["rows"]}
    assert by_name[first]["outcome"] == "failed"
    assert "different file" in by_name[first]["message"] and first in by_name[first]["message"]
    assert by_name[second]["outcome"] == "delivered"
    assert (folder / first).read_bytes() == ours[:-2] + b"X\n"
    assert s["deliveries"] == {"delivered": 1, "already_there": 0, "failed": 1, "pending": 1}
    assert sorted(files_in(folder)) == [first, second]


def test_a_file_on_the_server_but_not_marked_is_marked_already_there_without_upload(
    tmp_path: Path, sshd_server: SshServer
) -> None:
    target = _target(sshd_server, "acme-there")
    folder = sshd_server.root / "acme-there"
    night(tmp_path, DAY1, config(target), day_one())
    name = sorted(exported(tmp_path, "ACME"))[0]
    forget_delivered(tmp_path, name)  # killed between the rename and the mark
    stale = folder / f".{name}.part"  # and a server stopped mid-rename left its temporary name
    stale.write_bytes(b"partial")
    opened = len(sshd_server.opened_for_writing())
    s = night(tmp_path, DAY2, config(target))
    assert [
        (r["file_name"], r["outcome"], r["attempts"], r["delivered_at"]) for r in s["rows"]
    ] == [(name, "already_there", "1", DAY2)]
    assert len(sshd_server.opened_for_writing()) == opened, "nothing uploaded"
    assert not stale.exists(), "the stale temporary file is taken away"
    assert marks(tmp_path)[name][0] == "2026-11-24 02:00:00"
    _made_once(sshd_server, folder, list(exported(tmp_path, "ACME")))


def test_a_password_never_appears_in_a_report_the_log_or_a_prefect_parameter(
    tmp_path: Path, sshd_server: SshServer
) -> None:
    import datetime as dt
    import json
    import os
    import subprocess
    import sys

    from connectors.config import load_config
    from flows.nightly import nightly
    from flows.run_state import RunPaths
    from tests.pipeline_helpers import drop

    secret = "pw-Zq81-never-shown"
    # ACME logs in with its key (the password offered too); BETA with the password alone,
    # which this server refuses: its failure message names the variable, never its value
    toml = tmp_path / "cmi.toml"
    toml.write_text(
        "[inbox]\nsettle_seconds = 0\n"
        f'[delivery.ACME]\nurl = "{sshd_server.url("acme-secret")}"\n'
        f'key_file = "{sshd_server.user_key}"\npassword_env = "ACME_SFTP_PASSWORD"\n'
        f'known_hosts = "{sshd_server.known_hosts}"\n'
        f'[delivery.BETA]\nurl = "{sshd_server.url("beta-secret")}"\n'
        f'password_env = "ACME_SFTP_PASSWORD"\nknown_hosts = "{sshd_server.known_hosts}"\n'
    )
    drop(tmp_path / "inbox", day_one())
    state = tmp_path / "state" / "cmi.duckdb"
    env = {**os.environ, "ACME_SFTP_PASSWORD": secret,
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--inbox", str(tmp_path / "inbox"),
         "--outbox", str(tmp_path / "outbox"), "--state", str(state), "--config", str(toml),
         "--as-of", DAY1, "--no-prefect"],
        env=env, capture_output=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    latest = (tmp_path / "outbox" / "reports" / "LATEST").read_text().strip()
    text = (tmp_path / "outbox" / "reports" / latest / "deliveries.csv").read_text()
    rows = list(csvlib.DictReader(io.StringIO(text)))
    assert {(r["cmo_id"], r["outcome"]) for r in rows} == {
        ("ACME", "delivered"),
        ("BETA", "failed"),
    }
    assert all("ACME_SFTP_PASSWORD" in r["message"] for r in rows if r["cmo_id"] == "BETA"), rows
    log = (tmp_path / "state" / "cmi.log").read_bytes()
    assert b"delivery of" in log, "the log tells each delivery"
    texts = {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    texts["stdout"], texts["stderr"] = done.stdout, done.stderr
    assert [p for p, t in texts.items() if secret.encode() in t] == []
    # what a Prefect flow run of the night is given as parameters (sent to the API)
    cfg = load_config(toml, explicit=True)
    params = nightly.serialize_parameters(
        {
            "paths": RunPaths(tmp_path / "inbox", tmp_path / "outbox", state),
            "config": cfg,
            "as_of": dt.datetime(2026, 11, 23, 2),
        }  # fmt: skip
    )
    sent = json.dumps(params)
    assert "ACME_SFTP_PASSWORD" in sent and str(sshd_server.user_key) in sent
    assert secret not in sent


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_server_that_does_not_answer_fails_after_the_timeout(
    tmp_path: Path, silent_server: int, monkeypatch: pytest.MonkeyPatch, sshd_server: SshServer
) -> None:
    monkeypatch.setattr(delivery_io, "TIMEOUT_S", 2.0)  # 60 s in production (§8.1)
    hung = DeliveryTarget("ACME", f"sftp://cmi@127.0.0.1:{silent_server}/in",
                          key_file=str(sshd_server.user_key), known_hosts=str(sshd_server.known_hosts))  # fmt: skip
    drop = tmp_path / "beta"
    drop.mkdir()
    beta = DeliveryTarget("BETA", f"file://{drop}")
    s = night(tmp_path, DAY1, config(hung, beta), day_one())
    outcomes = {(r["cmo_id"], r["outcome"]) for r in s["rows"]}
    assert outcomes == {("ACME", "failed"), ("BETA", "delivered")}, "the other CMO is served"
    assert all("no answer" in r["message"] for r in s["rows"] if r["cmo_id"] == "ACME"), s["rows"]
    assert files_in(drop) == exported(tmp_path, "BETA")


def test_a_file_that_cannot_be_read_fails_alone_the_others_are_delivered(
    tmp_path: Path, sshd_server: SshServer
) -> None:
    target = _target(sshd_server, "acme-unreadable")
    folder = sshd_server.root / "acme-unreadable"
    ok = tmp_path / "ok.csv"
    ok.write_bytes(b"product_code,serial\n1,2\n")
    # a transfer tool took gone.csv from the outbox after the run listed it
    jobs = [delivery_io.Job(1, "gone.csv", tmp_path / "gone.csv"), delivery_io.Job(2, "ok.csv", ok)]
    got = {o.file_id: o for batch in delivery_io.deliver([(target, jobs)]) for o in batch}
    assert got[1].outcome == "failed" and "cannot read" in got[1].message, got[1]
    assert got[2].outcome == "delivered", got[2]
    assert files_in(folder) == {"ok.csv": ok.read_bytes()}, "no temporary file left"


def test_files_take_their_final_names_oldest_first_though_uploaded_side_by_side(
    tmp_path: Path, sshd_server: SshServer
) -> None:
    target = _target(sshd_server, "acme-order")
    folder = sshd_server.root / "acme-order"
    # the oldest file is the largest: sent side by side, the small ones would be done first
    big = {"ACME": [400_000, 3, 2, 1], "BETA": [1]}  # 400k serials: about 10 MB
    s = night(tmp_path, DAY1, config(target), day_one(big, pool=1_000_000))
    oldest_first = [r["file_name"] for r in s["rows"]]
    assert len(oldest_first) == 4 and "_400000_" in oldest_first[0], oldest_first
    made = [Path(p).name for p in sshd_server.renamed_to() if Path(p).parent == folder]
    assert made == oldest_first


def test_a_known_hosts_file_made_as_the_readme_says_is_accepted(
    tmp_path: Path, sshd_server: SshServer
) -> None:
    import subprocess

    scanned = subprocess.run(
        ["ssh-keyscan", "-p", str(sshd_server.port), "127.0.0.1"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    known = tmp_path / "known_hosts"
    known.write_text(scanned)
    assert f"[127.0.0.1]:{sshd_server.port} ssh-ed25519" in scanned
    s = night(
        tmp_path,
        DAY1,
        config(_target(sshd_server, "acme-scanned", known_hosts=str(known))),
        day_one(),
    )
    assert [r["outcome"] for r in s["rows"]] == ["delivered", "delivered"], s["rows"]


def test_a_missing_folder_on_the_server_is_a_failed_delivery_never_created(
    tmp_path: Path, sshd_server: SshServer
) -> None:
    missing = sshd_server.root / "acme-missing"  # not made: server.url() would make it
    target = DeliveryTarget(
        "ACME", f"sftp://{sshd_server.user}@127.0.0.1:{sshd_server.port}{missing}",
        key_file=str(sshd_server.user_key), known_hosts=str(sshd_server.known_hosts),
    )  # fmt: skip
    s = night(tmp_path, DAY1, config(target), day_one())
    assert [(r["outcome"], r["attempts"]) for r in s["rows"]] == [("failed", "1")] * 2
    assert all(f"the folder {missing} does not exist" in r["message"] for r in s["rows"]), s["rows"]
    assert not missing.exists(), "a delivery folder is never created"
    missing.mkdir()
    s = night(tmp_path, DAY2, config(target))
    assert [(r["outcome"], r["attempts"]) for r in s["rows"]] == [("delivered", "2")] * 2
    assert files_in(missing) == exported(tmp_path, "ACME")
