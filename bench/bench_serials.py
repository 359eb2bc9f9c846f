"""Serial benchmark (issue 2): load a pool, assign, export — each stage a nightly run.

Full size: a 10,000,000-serial pool for 10 products and 50 CMOs; 5,000,000 serials
assigned in 500 rows; 2,000,000 exported in 100 files.  Each stage runs in its own
child process (the real `run_local` pipeline on an inbox); wall time is measured
inside the child after imports, peak memory is the child's maximum RSS.  The
baseline is a plain `polars.read_csv` + `write_csv` of the same number of rows,
measured in the same run the same way.  The machines are shared and noisy, so each
stage is run `--reps` times from a copy of the state before it, alternating with
the baseline, and the medians are compared.  `--scale 0.1` runs a tenth of the size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
mode, a, b, c = sys.argv[1:5]
if mode == "baseline":
    import polars as pl
    t_imp = time.perf_counter() - t0
    t1 = time.perf_counter()
    frame = pl.read_csv(a, infer_schema=False)
    frame.write_csv(b)
    wall = time.perf_counter() - t1
    rows = frame.height
else:
    import datetime as dt
    from pathlib import Path
    from flows.pipeline import RunPaths, run_local
    from transforms.context import Config, InboxConfig, ReportsConfig
    t_imp = time.perf_counter() - t0
    root = Path(a)
    # "plain": the same night without report.html and report.xlsx
    reports = ReportsConfig(html=mode != "plain", xlsx=mode != "plain")
    t1 = time.perf_counter()
    out = run_local(RunPaths(root / "inbox", root / "outbox", root / "state" / "cmi.duckdb"),
                    Config(inbox=InboxConfig(settle_seconds=0), reports=reports),
                    dt.datetime.fromisoformat(c))
    wall = time.perf_counter() - t1
    rows = sum(f["rows_applied"] for f in out["files"])
    bad = [f for f in out["files"] if f["outcome"] != "applied" or f["rows_rejected"]]
    assert not bad and not out["unexpected"], (bad, out["unexpected"])
    summary = json.loads((Path(out["report_dir"]) / "run_summary.json").read_text())
    stages = {k: v for k, v in summary["durations_s"].items() if v >= 0.01}
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("BENCH-CHILD " + json.dumps({"wall": wall, "imports": t_imp, "peak_mb": peak, "rows": rows,
                  "stages": stages if mode != "baseline" else {}}))
"""


def child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"bench child failed:\n{out.stderr[-3000:]}")
    # the figures are the child's marked line: anything else it printed is not read
    marked = [ln for ln in out.stdout.splitlines() if ln.startswith("BENCH-CHILD ")]
    if not marked:
        raise SystemExit(f"bench child printed no figures:\n{out.stdout[-3000:]}")
    return json.loads(marked[-1].removeprefix("BENCH-CHILD "))


def measure_day(work: Path, data: Path, reps: int) -> dict[str, Any]:
    """The benchmark day as one night (issue 16): the pool, the assignments and the 100
    export files arrive together on a store holding only the master data, and the night
    runs with and without report.html / report.xlsx, alternating which goes first; the
    medians give the share the two add to that night's wall time (target: 10 %)."""
    root = work / "day"
    start = work / "day_start"
    (start / "inbox").mkdir(parents=True)
    for f in (data / "master").iterdir():
        shutil.copy(f, start / "inbox" / f.name)
    child("plain", str(start), "-", "2026-11-20T02:00:00")  # master data
    files = ["serial_pool_bench.csv", "assignments_bench.csv", "exports_bench.csv"]
    walls: dict[str, list[float]] = {"run": [], "plain": []}
    pages: list[float] = []
    for rep in range(reps):
        for mode in ("plain", "run") if rep % 2 else ("run", "plain"):
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(start, root)
            for name in files:
                shutil.copy(data / name, root / "inbox" / name)
            os.sync()
            out = child(mode, str(root), "-", "2026-11-21T02:00:00")
            walls[mode].append(out["wall"])
            if mode == "run":
                pages.append(out["stages"].get("report_pages", 0.0))
    with_s, without_s = statistics.median(walls["run"]), statistics.median(walls["plain"])
    print(
        "  the whole day in one night (pool, assignments, 100 exports): with report.html /"
        f" report.xlsx {' '.join(f'{w:.2f}' for w in walls['run'])} s, without"
        f" {' '.join(f'{w:.2f}' for w in walls['plain'])} s: {with_s / without_s:.3f}x"
        f" (report_pages {statistics.median(pages):.2f} s)"
    )
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(start, ignore_errors=True)
    return {
        "night": "day", "with_s": round(with_s, 3), "without_s": round(without_s, 3),
        "ratio": round(with_s / without_s, 3), "report_pages_s": round(statistics.median(pages), 3),
        "runs_with": [round(w, 3) for w in walls["run"]],
        "runs_without": [round(w, 3) for w in walls["plain"]],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--reps", type=int, default=3, help="runs of each stage and baseline")
    parser.add_argument(
        "--only",
        choices=["pool", "assign", "export"],
        default=None,
        help="measure one stage (the stages before it still run, once, unmeasured)",
    )
    opts = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.serials_gen import write_master, write_pool, write_requests

    pool_n = int(10_000_000 * opts.scale)
    assign_n = int(5_000_000 * opts.scale)
    export_n = int(2_000_000 * opts.scale)
    work = Path(tempfile.mkdtemp(prefix="cmi-bench-serials-"))
    root, data = work / "run", work / "data"
    data.mkdir(parents=True)
    inbox = root / "inbox"
    print(
        f"generating: pool {pool_n:,} serials / 10 products / 50 CMOs, assign {assign_n:,} in 500 rows, export {export_n:,} in 100 files …"
    )
    t = time.perf_counter()
    codes, cmos = write_master(data / "master", 10, 50)
    write_pool(data / "serial_pool_bench.csv", codes, pool_n)
    write_requests(data / "assignments_bench.csv", codes, cmos, 500, assign_n, 250)
    write_requests(data / "exports_bench.csv", codes, cmos, 100, export_n, 100)
    print(f"  generated in {time.perf_counter() - t:.1f}s")

    results: list[tuple[str, int, dict[str, float], dict[str, float]]] = []
    reports_overhead: dict[str, Any] = {}
    stages = [
        ("load pool", "serial_pool_bench.csv", pool_n, "2026-11-21T02:00:00"),
        ("assign", "assignments_bench.csv", assign_n, "2026-11-22T02:00:00"),
        ("export", "exports_bench.csv", export_n, "2026-11-23T02:00:00"),
    ]
    inbox.mkdir(parents=True)
    for f in (data / "master").iterdir():
        shutil.copy(f, inbox / f.name)
    child("run", str(root), "-", "2026-11-20T02:00:00")  # master data
    for name, file, n, as_of in stages:
        if opts.only and not name.endswith(opts.only):
            shutil.copy(data / file, inbox / file)
            child("run", str(root), "-", as_of)  # the state the next stage starts from
            continue
        # baseline: plain read + write of the same number of rows
        base_in = data / f"baseline_{n}.csv"
        if not base_in.exists():
            import polars as pl

            pl.read_csv(data / "serial_pool_bench.csv", infer_schema=False, n_rows=n).write_csv(
                base_in
            )
        before = work / "before"
        shutil.rmtree(before, ignore_errors=True)
        shutil.copytree(root, before)
        runs, bases, plains = [], [], []

        def night(
            mode: str, first: bool, before: Path = before, file: str = file, as_of: str = as_of
        ) -> dict[str, Any]:
            if not first:  # the same stage again, from the same state
                shutil.rmtree(root)
                shutil.copytree(before, root)
            shutil.copy(data / file, inbox / file)
            os.sync()  # the file arrived well before the night: no write-back left to compete with
            return child(mode, str(root), "-", as_of)

        for rep in range(opts.reps):
            # the export night also without report.html / report.xlsx, alternating which
            # goes first (issue 16: they may add at most 10% to that night)
            plain_first = name == "export" and rep % 2 == 1
            if plain_first:
                plains.append(night("plain", rep == 0))
            runs.append(night("run", rep == 0 and not plain_first))
            if name == "export" and not plain_first:
                plains.append(night("plain", False))
            bases.append(child("baseline", str(base_in), str(data / "baseline_out.csv"), "-"))
        measured = {
            "wall": statistics.median(r["wall"] for r in runs),
            "peak_mb": max(r["peak_mb"] for r in runs),
            "imports": statistics.median(r["imports"] for r in runs),
        }
        base = {
            "wall": statistics.median(b["wall"] for b in bases),
            "imports": statistics.median(b["imports"] for b in bases),
        }
        results.append((name, n, measured, base))
        if plains:
            plain = statistics.median(p["wall"] for p in plains)
            pages = statistics.median(r["stages"].get("report_pages", 0.0) for r in runs)
            reports_overhead = {
                "stage": name, "with_s": round(measured["wall"], 3), "without_s": round(plain, 3),
                "ratio": round(measured["wall"] / plain, 3), "report_pages_s": round(pages, 3),
                "runs_with": [round(r["wall"], 3) for r in runs],
                "runs_without": [round(p["wall"], 3) for p in plains],
            }  # fmt: skip
            print(
                f"  {name} without report.html / report.xlsx: "
                + " ".join(f"{p['wall']:.2f}" for p in plains)
                + f" s; with them {measured['wall'] / plain:.3f}x (report_pages {pages:.2f} s)"
            )
        print(
            f"  {name}: runs "
            + " ".join(f"{r['wall']:.2f}" for r in runs)
            + " s, baselines "
            + " ".join(f"{b['wall']:.2f}" for b in bases)
            + " s; pipeline stages (s): "
            + " | ".join(", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items()) for r in runs)
        )
        if opts.only:
            break

    day: dict[str, Any] = {}
    if not opts.only:
        day = measure_day(work, data, opts.reps)
    exported = sum(1 for _ in (root / "outbox" / "serials").rglob("*.csv"))
    print()
    print(
        f"{'stage':<10} {'rows':>12} {'wall s':>8} {'peak MB':>8} {'baseline s':>11} {'ratio':>6}"
    )
    for name, n, m, b in results:
        print(
            f"{name:<10} {n:>12,} {m['wall']:>8.2f} {m['peak_mb']:>8.0f} {b['wall']:>11.2f} {m['wall'] / b['wall']:>6.2f}"
        )
    tw = sum(m["wall"] for _, _, m, _ in results)
    tb = sum(b["wall"] for _, _, _, b in results)
    peak = max(m["peak_mb"] for _, _, m, _ in results)
    print(f"{'total':<10} {'':>12} {tw:>8.2f} {peak:>8.0f} {tb:>11.2f} {tw / tb:>6.2f}")
    print(
        f"interpreter + imports (reported separately): cmi {results[0][2]['imports']:.2f}s, polars-only {results[0][3]['imports']:.2f}s"
    )
    print(f"export files written: {exported}")
    print(f"medians of {opts.reps} runs each, alternating with the baseline")
    print("targets: whole stage <= 3x the plain read+write, peak memory < 2048 MB")
    load = os.getloadavg()
    if not opts.keep:
        shutil.rmtree(work)
    else:
        print(f"data kept in {work}")
    print(
        json.dumps(
            {
                "bench": "serials",
                "scale": opts.scale,
                "reps": opts.reps,
                "load_avg": [round(x, 2) for x in load],
                "stages": {
                    name: {"rows": n, "wall_s": round(m["wall"], 3), "peak_mb": round(m["peak_mb"]),
                           "baseline_s": round(b["wall"], 3), "ratio": round(m["wall"] / b["wall"], 3)}
                    for name, n, m, b in results
                },
                "reports_overhead": day or reports_overhead,
                "export_night_reports_overhead": reports_overhead,
            }
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
