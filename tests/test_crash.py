"""Crash safety (§8): a run killed with SIGKILL at any instant, then run again, ends with
exactly the exports, partner answers and serial balance of an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipeline_helpers import csv, drop

P = ["11223344556675", "04034567000018", "04034567000025"]
AS_OF = "2026-11-23T02:00:00"


def _inbox() -> dict[str, str]:
    files = {
        "products_a.csv": csv(
            "product_code,product_name", *[f"{p},Product {i}" for i, p in enumerate(P)]
        ),
        "cmos_a.csv": csv(
            "cmo_id,cmo_name,city,country,produceable_products",
            *[f"CMO{i},Maker {i},Basel,CH,{';'.join(P)}" for i in range(6)],
        ),
        "partnerships_a.csv": csv(
            "cmo_id,event,contact_email,tenant,payment_model",
            "CMO0,invite,a@b.example,,",
            "CMO0,accept,,t0,partner",
        ),
    }
    for k in range(3):  # several pool files: several transactions to be killed between
        files[f"serial_pool_{k}.csv"] = csv(
            "product_code,serial", *[f"{p},K{k}S{i:07d}" for p in P for i in range(25_000)]
        )
    files["assignments_a.csv"] = csv(
        "cmo_id,product_code,quantity", *[f"CMO{i % 6},{P[i % 3]},{1500 + i}" for i in range(30)]
    )
    files["partner_requests_a.csv"] = csv(
        "request_id,cmo_id,product_code,quantity",
        *[f"R{i},CMO0,{P[i % 3]},{100 + i}" for i in range(6)],
    )
    for k in range(3):
        files[f"exports_{k}.csv"] = csv(
            "cmo_id,product_code,quantity,allow_already_exported",
            *[f"CMO{i % 6},{P[(i + k) % 3]},{200 + i},{'Y' if k == 2 else 'N'}" for i in range(12)],
        )
    return files


def _cmd(root: Path) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "run", "--inbox", str(root / "inbox"), "--outbox",
            str(root / "outbox"), "--state", str(root / "state" / "cmi.duckdb"), "--config",
            str(root / "cmi.toml"), "--as-of", AS_OF, "--no-prefect"]  # fmt: skip


def _prepare(root: Path) -> None:
    drop(root / "inbox", _inbox())  # type: ignore[arg-type]
    (root / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")


def _outputs(root: Path) -> dict[str, bytes]:
    out = root / "outbox"
    files = {
        str(p.relative_to(out)): p.read_bytes()
        for sub in ("serials", "partners")
        for p in (out / sub).rglob("*.csv")
    }
    latest = (out / "reports" / "LATEST").read_text().strip()
    files["serial_balance.csv"] = (out / "reports" / latest / "serial_balance.csv").read_bytes()
    files["exported_files.csv"] = (out / "reports" / latest / "exported_files.csv").read_bytes()
    return files


@pytest.mark.timeout(600)
def test_sigkill_at_any_instant_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    ref = tmp_path / "ref"
    _prepare(ref)
    started = time.perf_counter()
    subprocess.run(_cmd(ref), check=True, env=env, capture_output=True)
    duration = time.perf_counter() - started
    expected = _outputs(ref)
    assert any(k.startswith("serials/") for k in expected) and any(
        k.startswith("partners/") for k in expected
    )
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.9):
        root = tmp_path / f"kill{int(fraction * 100)}"
        _prepare(root)
        proc = subprocess.Popen(
            _cmd(root), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(duration * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rerun = subprocess.run(_cmd(root), env=env, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        got = _outputs(root)
        assert sorted(got) == sorted(expected), f"kill at {fraction:.0%}: different files"
        for name, content in expected.items():
            assert got[name] == content, f"kill at {fraction:.0%}: {name} differs"
        assert not list((root / "inbox").glob("*.csv")), "every inbox file is processed or archived"
        shutil.rmtree(root)
