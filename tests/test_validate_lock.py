"""`cmi validate` takes the state store's lock without making its lock file (SPEC §1:
validate "changes nothing … no output written except its own report"), and is still
refused (exit 3) while a run uses the store, and still keeps a run out while it reads.

A store may have no lock file: copied from a backup, or its folder tidied by hand.  A
run always makes the file before it locks it, so a store without one is held by no run;
a run that starts while validate reads meets DuckDB's own lock of the store's file."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from connectors.state_view import open_state_view
from connectors.store import lock_path
from flows.cli import app
from flows.pipeline import run_local
from tests.pipeline_helpers import SETTLED, csv, drop, paths_in

runner = CliRunner()
DAY = dt.datetime(2026, 11, 23, 2, 0, 0)
P1 = "11223344556675"
PROJECT = Path(__file__).resolve().parents[1]


def _store_without_lock_file(root: Path) -> Path:
    """A state store after one run, its lock file gone; the inbox holds one more file."""
    paths = paths_in(root)
    drop(paths.inbox, {"products_a.csv": csv("product_code,product_name", f"{P1},Demo")})
    paths.outbox.mkdir()
    run_local(paths, SETTLED, DAY)
    lock_path(paths.state).unlink()
    drop(paths.inbox, {"products_b.csv": csv("product_code,product_name", f"{P1},Renamed")})
    return paths.state


def _validate(root: Path) -> object:
    (root / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")
    return runner.invoke(
        app,
        ["validate", "--inbox", str(root / "inbox"), "--state", str(root / "state" / "cmi.duckdb"),
         "--config", str(root / "cmi.toml"), "--report", str(root / "report"),
         "--as-of", "2026-11-24T02:00:00"],
    )  # fmt: skip


def test_validate_makes_no_lock_file_beside_a_store_that_has_none(tmp_path: Path) -> None:
    state = _store_without_lock_file(tmp_path)
    before = sorted(p.name for p in state.parent.iterdir())
    result = _validate(tmp_path)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "products_b.csv: 1 row(s) would apply" in result.output  # type: ignore[attr-defined]
    assert not lock_path(state).exists()
    assert sorted(p.name for p in state.parent.iterdir()) == before


def test_validate_is_exit_3_while_a_run_has_the_store_open_without_a_lock_file(
    tmp_path: Path,
) -> None:
    """The moment between a run's making its lock file and validate's look for it, played
    the other way round: a process holds the store open for writing and no lock file is
    there.  Validate says a run is using the store (exit 3), never an unexpected error."""
    state = _store_without_lock_file(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, os, sys, time; c = duckdb.connect(os.environ['S']); "
         "print('open', flush=True); sys.stdin.read()"],
        env={**os.environ, "S": str(state)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        result = _validate(tmp_path)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=120)
    assert result.exit_code == 3, result.output  # type: ignore[attr-defined]
    assert f"a run is using the state store {state}" in result.output  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    assert not lock_path(state).exists()


def test_a_run_cannot_start_while_validate_reads_a_store_without_a_lock_file(
    tmp_path: Path,
) -> None:
    """The other way: while validate's read-only view is open, a run (another process, as
    in operations) is refused with exit 3 and changes nothing."""
    state = _store_without_lock_file(tmp_path)
    paths = paths_in(tmp_path)
    store, _ = open_state_view(state)
    try:
        run = subprocess.run(
            [sys.executable, "-c", "from flows.cli import main; main()", "run",
             "--inbox", str(paths.inbox), "--outbox", str(paths.outbox), "--state", str(state),
             "--as-of", "2026-11-24T02:00:00", "--no-prefect"],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(PROJECT), "CMI_CONFIG": ""},
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        store.close()
    assert run.returncode == 3, run.stdout + run.stderr
    assert "another run holds the lock of the state store" in run.stderr
    assert (paths.inbox / "products_b.csv").exists()
