"""Benchmark: wide files — thousands of (CMO, product) pairs in one night (SPEC §5, §8).

The same two nights twice, each night a fresh `cmi run --no-prefect` child (as cron
or an operator starts it; peak RSS from `os.wait4`), same rows and same serials:

- `narrow`: one CMO and one product — every row of every file names that pair;
- `wide`: `--cmos` CMOs each producing all `--products` products — every row of a
  file names another pair (the serial pool file holds every product).

Night 1: products, CMOs, a serial pool (`--per` × 2 × CMOs serials per product, one
file), then one row per pair of assignments (`--per` serials), exports (a third of
them) and returns (a sixth). Night 2: partnerships (each CMO invited and accepted),
one partner request per pair, more assignments and exports (other quantities: a file seen before is a duplicate). Narrow and wide alternate
(`--reps` pairs); each night's ratio is between the medians. What a night costs must
follow its rows, not the number of distinct pairs: the rules work set-based per file,
never a query per pair (a returns file of 5,000 pairs once cost a query of the
serial runs per pair: 84.6 s against 11.4 s; a pool file of hundreds of products
once ran DuckDB out of memory in the night's uniqueness check). Target: wide ≤ 1.5 ×
narrow for each night.

    python -m bench.bench_wide                              # 100 products x 50 CMOs
    python -m bench.bench_wide --products 20 --cmos 10      # small, quick

Both variants must accept the same rows and end with every invariant true (checked).
The last line is one JSON object (with the serial balance's totals reached): seconds and peak MB per night and variant, the
ratios, the load average.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from transforms.codes import gs1_check_digit

TARGET_RATIO = 1.5
_SETTLED = 3600  # files written an hour ago: past any settle time


def _gtins(n: int) -> list[str]:
    return [(base := f"07{i:011d}") + gs1_check_digit(base) for i in range(1, n + 1)]


def _pairs(
    variant: str, products: int, cmos: int
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """The products, the CMOs and one (CMO, product) per row: every pair once (wide), or
    the same pair on every row (narrow)."""
    codes, names = _gtins(products), [f"CMO{j:03d}" for j in range(cmos)]
    pairs = [(m, c) for m in names for c in codes]
    if variant == "narrow":
        return codes[:1], names[:1], [(names[0], codes[0])] * len(pairs)
    return codes, names, pairs


def _nights(variant: str, products: int, cmos: int, per: int) -> list[dict[str, str]]:
    """The files of the two nights (name -> text)."""
    codes, names, pairs = _pairs(variant, products, cmos)
    serials = per * 2 * cmos * products // len(codes)  # per product: the same total
    rows = "".join

    def per_pair(quantity: int) -> str:
        return "cmo_id,product_code,quantity\n" + rows(f"{m},{c},{quantity}\n" for m, c in pairs)

    first = {
        "products_a.csv": "product_code,product_name\n" + rows(f"{c},Product {c}\n" for c in codes),
        "cmos_a.csv": "cmo_id,cmo_name,city,country,produceable_products\n"
        + rows(f"{m},Name {m},Basel,CH,{';'.join(codes)}\n" for m in names),
        "serial_pool_a.csv": "product_code,serial\n"
        + rows(f"{c},{k}\n" for c in codes for k in range(1, serials + 1)),
        "assignments_a.csv": per_pair(per),
        "exports_a.csv": per_pair(per // 3),
        "serial_returns_a.csv": per_pair(per // 6),
    }
    second = {
        "partnerships_b.csv": "cmo_id,event,contact_email,tenant,payment_model\n"
        + rows(f"{m},invite,ops@cmo.example,,\n{m},accept,,T{m},partner\n" for m in names),
        "assignments_b.csv": per_pair(per // 4),
        "partner_requests_b.csv": "request_id,cmo_id,product_code,quantity\n"
        + rows(f"R{i:07d},{m},{c},{per // 10}\n" for i, (m, c) in enumerate(pairs)),
        "exports_b.csv": per_pair(per // 5),
    }
    return [first, second]


def _variant(
    variant: str, args: argparse.Namespace, tmp: Path, rep: int
) -> list[dict[str, object]]:
    """Both nights of one variant on a fresh store: wall seconds, peak MB, totals."""
    root = tmp / f"{variant}-{rep}"
    nights = []
    for n, files in enumerate(_nights(variant, args.products, args.cmos, args.per), start=1):
        nights.append(_night_measured(root, n, files, f"2026-11-0{n}T02:00:00"))
    shutil.rmtree(root)
    return nights


def _night_measured(root: Path, n: int, files: dict[str, str], as_of: str) -> dict[str, object]:
    inbox = root / f"inbox{n}"
    inbox.mkdir(parents=True)
    for name, text in files.items():
        (inbox / name).write_text(text)
        os.utime(inbox / name, (time.time() - _SETTLED,) * 2)
    cmd = [sys.executable, "-m", "flows.cli", "run", "--no-prefect", "--inbox", str(inbox)]
    cmd += ["--outbox", str(root / "outbox"), "--state", str(root / "state" / "cmi.duckdb")]
    cmd += ["--as-of", as_of]
    env = {**os.environ, "PREFECT_API_URL": "", "PYTHONPATH": str(Path(__file__).parents[1])}
    started = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    child.returncode = code
    if code:
        raise SystemExit(f"{root.name} night {n} exited {code}:\n{out.decode()[-2000:]}")
    reports = root / "outbox" / "reports"
    folder = reports / (reports / "LATEST").read_text().strip()
    summary = json.loads((folder / "run_summary.json").read_text())
    failed = [name for name, ok in summary["invariants"].items() if not ok]
    totals = summary["totals"]
    if (
        failed
        or totals["files_quarantined"]
        or totals["files_duplicate"]
        or totals["rows_rejected"]
    ):
        raise SystemExit(
            f"{root.name} night {n} is not clean: invariants failed {failed}, {totals}"
        )
    with (folder / "serial_balance.csv").open() as fh:
        balance = _balance(fh)
    return {
        "wall_s": wall,
        "peak_mb": usage.ru_maxrss / 1024,
        "balance": balance,
    }


# the serial balance's totals that both variants must reach (`available` is per product)
_COMPARED = ("assigned", "assigned_not_exported", "exported", "requested")


def _balance(fh: TextIO) -> dict[str, int]:
    rows = list(csv.DictReader(fh))
    return {column: sum(int(row[column] or 0) for row in rows) for column in _COMPARED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100)
    parser.add_argument("--cmos", type=int, default=50)
    parser.add_argument("--per", type=int, default=30, help="serials assigned per row")
    parser.add_argument("--reps", type=int, default=2, help="alternating narrow/wide pairs")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    runs: dict[str, list[list[dict[str, object]]]] = {"narrow": [], "wide": []}
    with tempfile.TemporaryDirectory(prefix="bench_wide_") as tmp:
        for rep in range(args.reps):
            for variant in ("narrow", "wide"):
                runs[variant].append(_variant(variant, args, Path(tmp), rep))
    for n in range(2):
        done = {v: runs[v][0][n]["balance"] for v in runs}
        if done["narrow"] != done["wide"]:
            raise SystemExit(f"night {n + 1}: the variants did not do the same: {done}")
    result: dict[str, object] = {
        "bench": "wide",
        "products": args.products,
        "cmos": args.cmos,
        "pairs": args.products * args.cmos,
        "per": args.per,
        "balance": [runs["wide"][0][n]["balance"] for n in range(2)],
    }
    print(f"{args.products} products x {args.cmos} CMOs = {args.products * args.cmos} pairs")
    print(
        f"{'night':>5} {'narrow s':>9} {'wide s':>8} {'ratio':>6} {'narrow MB':>10} {'wide MB':>8}"
    )
    worst = 0.0
    for n in range(2):
        wall = {v: statistics.median(float(r[n]["wall_s"]) for r in runs[v]) for v in runs}  # type: ignore[arg-type]
        peak = {v: max(float(r[n]["peak_mb"]) for r in runs[v]) for v in runs}  # type: ignore[arg-type]
        ratio = wall["wide"] / wall["narrow"]
        worst = max(worst, ratio)
        print(f"{n + 1:>5} {wall['narrow']:>9.2f} {wall['wide']:>8.2f} {ratio:>6.2f} "
              f"{peak['narrow']:>10.0f} {peak['wide']:>8.0f}")  # fmt: skip
        for v in runs:
            result[f"night{n + 1}_{v}_s"] = round(wall[v], 2)
            result[f"night{n + 1}_{v}_peak_mb"] = round(peak[v])
        result[f"night{n + 1}_ratio"] = round(ratio, 2)
    result["ratio"] = round(worst, 2)
    result["target_ratio"] = TARGET_RATIO
    result["load_avg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(f"wide / narrow: {worst:.2f} (target ≤ {TARGET_RATIO})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
