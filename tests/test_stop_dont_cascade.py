"""Stop, don't cascade (SPEC §8): a failure that is not about a file's content — the state
store or the outbox cannot be written — stops the run with one line; the file and every
file after it stay in the inbox untouched; once the cause is gone the next run ends as an
uninterrupted night.  The disks are real: small tmpfs mounts (the tests run as root)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from connectors.faults import describe, is_environmental
from tests.mounts import remount, tmpfs
from tests.pipeline_helpers import csv, drop

P = ["11223344556675", "04034567000018"]
AS_OF = "2026-11-23T02:00:00"
ROOT = Path(__file__).resolve().parents[1]


def _master() -> dict[str, str]:
    return {
        "products_a.csv": csv(
            "product_code,product_name", f"{P[0]},Product A", f"{P[1]},Product B", "123,Bad code"
        ),
        "cmos_a.csv": csv(
            "cmo_id,cmo_name,city,country,produceable_products",
            f"ACME,Acme Pharma,Mannheim,DE,{P[0]};{P[1]}",
            f"BETA,Beta Labs,Cork,IE,{P[1]}",
        ),
    }


def _cmd(root: Path, state: Path | None = None) -> list[str]:
    state = state or root / "state"
    return [sys.executable, "-m", "flows.cli", "run", "--inbox", str(root / "inbox"), "--outbox",
            str(root / "outbox"), "--state", str(state / "cmi.duckdb"), "--config",
            str(root / "cmi.toml"), "--as-of", AS_OF, "--no-prefect"]  # fmt: skip


def _run(root: Path, state: Path | None = None) -> subprocess.CompletedProcess[str]:
    (root / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(_cmd(root, state), env=env, capture_output=True, text=True, timeout=600)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _inbox_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "inbox").glob("*.csv")}


def _archived(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "inbox" / "archive").glob("*/*.csv"))


def _night(root: Path) -> dict[str, bytes]:
    """What an uninterrupted night must equal: the export files and answers, and the state
    reports of the latest run folder."""
    out = root / "outbox"
    got = {
        str(p.relative_to(out)): p.read_bytes()
        for sub in ("serials", "partners")
        for p in (out / sub).rglob("*.csv")
    }
    latest = out / "reports" / (out / "reports" / "LATEST").read_text().strip()
    for name in ("cmos.csv", "serial_balance.csv", "exported_files.csv", "contract_balance.csv"):
        got[name] = (latest / name).read_bytes()
    return got


def _assert_same_night(root: Path, ref: Path) -> None:
    expected, got = _night(ref), _night(root)
    assert sorted(got) == sorted(expected)
    for name, content in expected.items():
        assert got[name] == content, f"{name} differs from the uninterrupted night"
    assert _archived(root) == _archived(ref)
    assert not (root / "inbox" / "quarantine").exists(), "nothing may be quarantined"


def test_a_full_disk_under_the_state_store_stops_the_run_and_the_next_run_recovers(
    tmp_path: Path,
) -> None:
    """Issue 18 item 2: products, cmos, a 300k-serial pool and an assignment, the state on a
    2 MB tmpfs.  The pool's commit fails: the run stops (exit 1, one line saying the state
    store's folder is full), the pool and the assignment that depends on it stay in the
    inbox untouched — never quarantined, never applied against a state without the pool.
    Once space is freed the next run ends byte-identical to an uninterrupted night."""
    files: dict[str, str | bytes] = dict(_master())
    files["serial_pool_a.csv"] = csv(
        "product_code,serial", *[f"{P[i % 2]},S{i:09d}" for i in range(300_000)]
    )
    files["assignments_a.csv"] = csv(
        "cmo_id,product_code,quantity", f"ACME,{P[0]},1000", f"BETA,{P[1]},500"
    )
    files["exports_a.csv"] = csv("cmo_id,product_code,quantity", f"ACME,{P[0]},300")
    ref = tmp_path / "ref"
    drop(ref / "inbox", files)
    assert _run(ref).returncode == 0

    root = tmp_path / "night"
    drop(root / "inbox", files)
    with tmpfs(tmp_path / "statedisk", "2m") as state:
        first = _run(root, state)
        assert first.returncode == 1
        line = _one_line(first.stderr)
        assert "state store's folder" in line and "full" in line and "free space" in line, line
        assert "serial_pool_a.csv" in line  # the file it stopped at
        left = _inbox_files(root)
        assert sorted(left) == ["assignments_a.csv", "exports_a.csv", "serial_pool_a.csv"]
        assert all(left[n] == files[n].encode() for n in left), "left untouched"  # type: ignore[union-attr]
        assert _archived(root) == ["cmos_a.csv", "products_a.csv"]
        assert not (root / "inbox" / "quarantine").exists()
        remount(state, "size=64m")  # space freed
        second = _run(root, state)
        assert second.returncode == 0, second.stderr
        _assert_same_night(root, ref)


def test_a_full_outbox_stops_the_run_and_the_next_run_writes_what_is_missing(
    tmp_path: Path,
) -> None:
    """An export file that cannot be written (the outbox is full) stops the run: the
    export stays recorded, the files not yet applied stay in the inbox; once space is
    freed the next run writes the export first and ends as an uninterrupted night."""
    files: dict[str, str | bytes] = dict(_master())
    files["serial_pool_a.csv"] = csv(
        "product_code,serial", *[f"{P[0]},S{i:09d}" for i in range(60_000)]
    )
    files["assignments_a.csv"] = csv("cmo_id,product_code,quantity", f"ACME,{P[0]},50000")
    files["exports_a.csv"] = csv("cmo_id,product_code,quantity", f"ACME,{P[0]},40000")
    files["exports_b.csv"] = csv("cmo_id,product_code,quantity", f"ACME,{P[0]},10")
    ref = tmp_path / "ref"
    drop(ref / "inbox", files)
    assert _run(ref).returncode == 0

    root = tmp_path / "night"
    drop(root / "inbox", files)
    with tmpfs(root / "outbox", "256k") as outbox:
        first = _run(root)
        assert first.returncode == 1
        line = _one_line(first.stderr)
        assert "the outbox" in line and "full" in line and "free space" in line, line
        assert not (root / "inbox" / "quarantine").exists()
        assert "exports_a.csv" in _archived(root)  # applied: its export is recorded
        assert not list((outbox / "serials").rglob("*_40000_*.csv"))  # and not written
        remount(outbox, "size=16m")
        second = _run(root)
        assert second.returncode == 0, second.stderr
        _assert_same_night(root, ref)


def test_a_read_only_state_folder_is_one_line_without_traceback(tmp_path: Path) -> None:
    """Issue 18 item 5: the log cannot be opened; the line says so, names the folder and
    what to do; the inbox is left as it is; once writable, the next run applies it."""
    root = tmp_path / "night"
    with tmpfs(tmp_path / "statedisk", "16m") as state:
        drop(root / "inbox", {"products_a.csv": _master()["products_a.csv"]})
        assert _run(root, state).returncode == 0
        remount(state, "ro")
        drop(root / "inbox", {"cmos_a.csv": _master()["cmos_a.csv"]})
        first = _run(root, state)
        assert first.returncode == 1
        line = _one_line(first.stderr)
        assert str(state) in line and "read-only" in line and "make it writable" in line, line
        assert "cmi.log" in line and "cannot be opened" in line, line
        assert list(_inbox_files(root)) == ["cmos_a.csv"]
        remount(state, "rw")
        assert _run(root, state).returncode == 0
        assert _archived(root) == ["cmos_a.csv", "products_a.csv"]


def test_a_read_only_empty_state_folder_is_one_line_too(tmp_path: Path) -> None:
    root = tmp_path / "night"
    with tmpfs(tmp_path / "statedisk", "1m") as state:
        remount(state, "ro")
        drop(root / "inbox", {"products_a.csv": _master()["products_a.csv"]})
        first = _run(root, state)
        assert first.returncode == 1
        assert "read-only" in _one_line(first.stderr)
        assert list(_inbox_files(root)) == ["products_a.csv"]


def test_failures_of_the_surroundings_are_told_apart_from_bad_content(tmp_path: Path) -> None:
    """What stops a run (disk, permissions, I/O, memory, the store's files) and what does
    not (a bug or a bad value, which quarantine the file), and the line for each cause."""
    places = [("the outbox", tmp_path / "out")]
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x.csv"))
    assert is_environmental(full)
    assert describe(full, places) == (
        f"the outbox {tmp_path / 'out'} is full (no space left on the device): free space "
        "there, then run again"
    )
    eio = OSError(errno.EIO, "Input/output error", str(tmp_path / "out" / "x.csv"))
    assert "I/O error" in describe(eio, places) and "check the disk" in describe(eio, places)
    failed_commit = duckdb.TransactionException(
        f'TransactionContext Error: Failed to commit: Could not write file "{tmp_path}/s/'
        'cmi.duckdb.wal": No space left on device'
    )
    assert is_environmental(failed_commit)
    assert describe(failed_commit, [("the state store's folder", tmp_path / "s")]).startswith(
        f"the state store's folder {tmp_path / 's'} is full"
    )
    assert is_environmental(MemoryError()) and "memory" in describe(MemoryError())
    assert not is_environmental(KeyError("product_code"))
    assert not is_environmental(ValueError("bad date"))
    assert not is_environmental(duckdb.ConstraintException("duplicate key"))
