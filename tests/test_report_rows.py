"""No report row lost (SPEC §8): a run report's rows are recorded with their file's commit;
a run killed after committing some files, or whose report writing failed, leaves them
recorded and the next run's report folder holds them, with the file they came from —
every row of every applied file is in exactly one report folder."""

from __future__ import annotations

import csv as csvlib
import datetime as dt
import io
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from connectors.demo import demo_files
from connectors.store import memory_connection, open_store
from tests.mounts import remount, tmpfs
from tests.pipeline_helpers import csv, drop
from transforms import run_rows

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2026-11-23T02:00:00"
RUN_REPORTS = ("rejects.csv", "allocations.csv", "contract_log.csv",
               "shipping_reconciliation.csv", "shipping_exceptions.csv")  # fmt: skip
P = "11223344556675"


def _cmd(root: Path) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "run", "--inbox", str(root / "inbox"), "--outbox",
            str(root / "outbox"), "--state", str(root / "state" / "cmi.duckdb"), "--config",
            str(root / "cmi.toml"), "--as-of", AS_OF, "--no-prefect"]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _run(root: Path) -> subprocess.CompletedProcess[str]:
    (root / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")
    return subprocess.run(_cmd(root), env=_env(), capture_output=True, text=True, timeout=600)


def _start(root: Path) -> subprocess.Popen[bytes]:
    (root / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")
    return subprocess.Popen(
        _cmd(root), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _rows(root: Path) -> dict[str, Counter[tuple[str, ...]]]:
    """Every row of every run report of every report folder, counted."""
    got: dict[str, Counter[tuple[str, ...]]] = {name: Counter() for name in RUN_REPORTS}
    for folder in (root / "outbox" / "reports").iterdir():
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        for name in RUN_REPORTS:
            if not (folder / name).exists():  # a folder without it holds none of its rows
                continue
            with (folder / name).open(encoding="utf-8", newline="") as fh:
                got[name].update(tuple(r) for r in list(csvlib.reader(fh))[1:])
    return got


def _assert_each_row_once(root: Path, ref: dict[str, Counter[tuple[str, ...]]], what: str) -> None:
    got = _rows(root)
    for name in RUN_REPORTS:
        missing, extra = ref[name] - got[name], got[name] - ref[name]
        assert not missing and not extra, (
            f"{what}: {name}: {sum(missing.values())} row(s) in no report folder, "
            f"{sum(extra.values())} more than once; e.g. {list(missing)[:2]} {list(extra)[:2]}"
        )


def _day(pool_rows: int) -> dict[str, str | bytes]:
    """The demo day (every file kind, rows wrong on purpose) and a larger pool file."""
    files: dict[str, str | bytes] = dict(demo_files(dt.date(2026, 11, 23)))
    # no serials generated in-house: they are random, and the rows are compared with a
    # reference run's
    files.pop(next(n for n in files if n.startswith("serial_generate_")))
    files["serial_pool_zz_large.csv"] = csv(
        "product_code,serial", *[f"{P},Z{i:010d}" for i in range(pool_rows)], f"{P},bad serial"
    )
    return files


# ------------------------------------------------------------------ the recorded rows


def test_claimed_rows_of_a_run_that_did_not_write_its_folder_go_to_the_next_one() -> None:
    con = memory_connection()

    def start(run_id: str, hour: int) -> None:
        when = dt.datetime(2026, 1, 1, hour)
        con.execute("INSERT INTO runs VALUES (?, ?, ?, NULL)", [run_id, when, when])

    start("R1", 1)
    start("R2", 2)
    rows = pl.DataFrame({"file": ["a.csv", "a.csv"], "line": [2, 3]})
    run_rows.record_rows(con, "R1", "rejects.csv", rows)
    run_rows.record_rows(con, "R1", "rejects.csv", rows.with_columns(pl.lit("b.csv").alias("file")))
    run_rows.record_rows(
        con, "R2", "rejects.csv", rows.head(1).with_columns(pl.lit("c.csv").alias("file"))
    )
    schema = {"file": pl.String(), "line": pl.Int64(), "value": pl.String()}
    # R2 claims R1's rows and its own, and stops before its folder is written
    assert run_rows.claim_unreported(con, "R2") == ["R1", "R2"]
    assert run_rows.pending_claims(con) == ["R2"]
    run_rows.settle_claims(con, written=[])  # R2's folder is not there: given up
    assert run_rows.pending_claims(con) == []
    start("R3", 3)
    assert run_rows.claim_unreported(con, "R3") == ["R1", "R2", "R3"]
    got = run_rows.recorded_rows(con, ["R1", "R2", "R3"], "rejects.csv", schema)
    assert got.rows() == [("a.csv", 2, None), ("a.csv", 3, None), ("b.csv", 2, None),
                          ("b.csv", 3, None), ("c.csv", 2, None)]  # fmt: skip
    # R3's folder was renamed into place before it could mark it: the next run keeps it
    run_rows.settle_claims(con, written=["R3"])
    assert run_rows.claim_unreported(con, "R4") == []  # R4 has no row in runs: nothing
    # reported rows are not kept: the state keeps one small row per run
    assert con.sql("SELECT count(*) FROM report_rows").fetchone() == (0,)
    assert con.sql("SELECT count(*) FROM run_reports WHERE done").fetchone() == (3,)


def test_a_store_of_an_earlier_version_does_not_report_its_finished_runs_again(
    tmp_path: Path,
) -> None:
    """A store written before the report rows were recorded: its finished runs wrote their
    folders; a run that died (no `finished_at`) never did, so its rows are reported."""
    path = tmp_path / "cmi.duckdb"
    store = open_store(path)
    store.con.execute("DROP TABLE run_reports")
    store.con.execute(
        "INSERT INTO runs VALUES ('OLD1', now(), now(), now()), ('OLD2', now(), now(), NULL)"
    )
    store.close()
    store = open_store(path)
    try:
        store.con.execute("INSERT INTO runs VALUES ('NEW', now(), now(), NULL)")
        assert run_rows.claim_unreported(store.con, "NEW") == ["OLD2", "NEW"]
    finally:
        store.close()


# ------------------------------------------------------------------ runs that die


def test_issue_18_reproduction_kill_after_the_first_file_is_archived(tmp_path: Path) -> None:
    """`products_a.csv` with one bad row plus a large `serial_pool_b.csv`; SIGKILL once
    `products_a.csv` is archived; the re-run with the same --as-of reports the bad row."""
    files: dict[str, str | bytes] = {
        "products_a.csv": csv("product_code,product_name", f"{P},Demo", "1.12233E+13,Mangled"),
        "serial_pool_b.csv": csv(
            "product_code,serial", *[f"{P},S{i:010d}" for i in range(1_000_000)]
        ),
    }
    root = tmp_path / "night"
    drop(root / "inbox", files)
    proc = _start(root)
    archived = root / "inbox" / "archive" / "20261123T020000" / "products_a.csv"
    deadline = time.monotonic() + 120
    while not archived.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert archived.exists() and (root / "inbox" / "serial_pool_b.csv").exists(), (
        "killed while the pool was applied"
    )
    rerun = _run(root)
    assert rerun.returncode == 0, rerun.stderr
    (folder,) = [p for p in (root / "outbox" / "reports").iterdir() if p.is_dir()]
    rejects = list(csvlib.DictReader(io.StringIO((folder / "rejects.csv").read_text())))
    assert [(r["file"], r["line"], r["column"]) for r in rejects] == [
        ("products_a.csv", "3", "product_code")
    ]
    summary = (folder / "run_summary.json").read_text()
    assert "20261123T020000" in summary and "stopped before writing their reports" in summary


def test_a_read_only_outbox_loses_no_report_row(tmp_path: Path) -> None:
    """The outbox cannot be written: the run stops (its files applied so far are committed
    with their rows recorded); once it is writable, the next run's report folder holds the
    rows of both runs, each once, as an uninterrupted night's."""
    files = _day(pool_rows=1000)
    ref = tmp_path / "ref"
    drop(ref / "inbox", files)
    assert _run(ref).returncode == 0
    expected = _rows(ref)
    assert all(expected[name] for name in RUN_REPORTS), "the day has rows in every run report"

    root = tmp_path / "night"
    drop(root / "inbox", files)
    with tmpfs(root / "outbox", "16m") as outbox:
        remount(outbox, "ro")
        first = _run(root)
        assert first.returncode == 1 and "read-only" in first.stderr, first.stderr
        assert list((root / "inbox" / "archive").glob("*/*")), "some files were applied"
        remount(outbox, "rw")
        second = _run(root)
        assert second.returncode == 0, second.stderr
        _assert_each_row_once(root, expected, "read-only outbox")
        (folder,) = [p for p in (outbox / "reports").iterdir() if p.is_dir()]
        assert folder.name == "20261123T020000-2"


@pytest.fixture(scope="module")
def crash_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str | bytes], dict]:
    """The day of the crash tests and the rows of its uninterrupted night."""
    files = _day(pool_rows=100_000)
    ref = tmp_path_factory.mktemp("ref")
    drop(ref / "inbox", files)
    assert _run(ref).returncode == 0
    return files, _rows(ref)


def _kill_at_random(root: Path, rng: random.Random, n_files: int) -> str:
    """Start a run and SIGKILL it at a random instant after the k-th file was archived (k
    random; k = n_files + 1: while the report folder is written), a random delay later."""
    k = rng.randint(1, n_files + 1)
    delay = rng.uniform(0.0, 0.3)
    proc = _start(root)
    archive, reports = root / "inbox" / "archive", root / "outbox" / "reports"
    before = len(list(archive.glob("*/*"))) if archive.exists() else 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        done = (len(list(archive.glob("*/*"))) if archive.exists() else 0) - before
        writing = reports.exists() and any(p.is_dir() for p in reports.iterdir())
        if done >= k or writing:
            break
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return f"k={k} +{delay:.2f}s"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_sigkill_at_random_instants_loses_no_report_row(
    tmp_path: Path, seed: int, crash_day: tuple[dict[str, str | bytes], dict]
) -> None:
    """Property: kill `cmi run` with SIGKILL at random instants (twice in a night, each
    after a random number of files was committed or while the report folder is written,
    then let it finish): every row of every run report of an uninterrupted night is in
    exactly one report folder."""
    files, expected = crash_day
    rng = random.Random(seed)
    root = tmp_path / "night"
    drop(root / "inbox", files)
    kills = [_kill_at_random(root, rng, len(files)) for _ in range(2)]
    final = _run(root)
    assert final.returncode == 0, final.stderr
    _assert_each_row_once(root, expected, f"seed {seed}, kills {kills}")
    assert not list((root / "inbox").glob("*.*")), "every file applied or quarantined"
