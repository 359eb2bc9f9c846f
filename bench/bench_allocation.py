"""Benchmark of allocation (SPEC §7.5): `python -m bench.bench_allocation [--orders N]`.

For ICFULLQT off and on, a child process generates the data (`allocation_gen`),
times `allocate_order_lines` and, on the same data, a DuckDB ASOF join of every
order line to its first candidate line by end date (a set-based floor that
ignores consumption), and reports its RSS with the data generated and its peak RSS
after the allocation and after the floor (the target is on the last, the whole child).  Target: >= 200,000 order
lines/s on 2 cores, peak memory < 2 GB.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time

import duckdb
import polars as pl

from bench.allocation_gen import generate
from transforms.allocation import allocate_order_lines
from transforms.context import FunctionsConfig


def _asof_floor(orders: pl.DataFrame, lines: pl.DataFrame) -> float:
    """Seconds of a DuckDB ASOF join of every order line to the line of its item with the
    closest end date on or after the order date (tables materialised first; the GTIN is
    joined as an integer, a set-based floor only)."""
    con = duckdb.connect()
    con.register("o0", orders.select("_line", pl.col("item").cast(pl.Int64), "order_date"))
    con.register(
        "l0",
        lines.select(
            "contract_id",
            "line_no",
            pl.col("item").cast(pl.Int64),
            pl.col("valid_to").fill_null(pl.date(9999, 12, 31)),
        ),
    )
    con.execute("CREATE TABLE o AS SELECT * FROM o0")
    con.execute("CREATE TABLE l AS SELECT * FROM l0")
    t0 = time.perf_counter()
    con.execute(
        """CREATE TEMP TABLE first_line AS
           SELECT o._line, l.contract_id, l.line_no
           FROM o ASOF LEFT JOIN l ON o.item = l.item AND o.order_date <= l.valid_to"""
    )
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def _rss_mb() -> int:
    """Current resident set size (Linux), MB."""
    with open("/proc/self/statm") as f:
        return round(int(f.read().split()[1]) * resource.getpagesize() / 2**20)


def _peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def child(n_orders: int, n_lines: int, n_items: int, icfullqt: bool) -> dict[str, object]:
    t0 = time.perf_counter()
    orders, lines, contracts = generate(n_orders, n_lines, n_items)
    gen_s = time.perf_counter() - t0
    gc.collect()
    data_mb, gen_peak_mb = _rss_mb(), _peak_mb()
    t0 = time.perf_counter()
    result = allocate_order_lines(orders, lines, FunctionsConfig(icfullqt=icfullqt), contracts)
    wall = time.perf_counter() - t0
    alloc_peak_mb = _peak_mb()  # the peak so far: generation or allocation, not the floor
    floor = _asof_floor(orders, lines)
    reasons = result.allocations.group_by("reason").len().sort("len", descending=True)
    return {
        "icfullqt": icfullqt,
        "orders": n_orders,
        "contract_lines": lines.height,
        "items": n_items,
        "generate_s": round(gen_s, 2),
        "wall_s": round(wall, 3),
        "order_lines_per_s": round(n_orders / wall),
        "asof_join_s": round(floor, 3),
        "ratio_to_asof": round(wall / floor, 1),
        "linked": int(result.allocations.get_column("contract_id").is_not_null().sum()),
        "rejected": result.rejects.height,
        "reasons": {str(r): int(c) for r, c in reasons.iter_rows()},
        "rss_with_data_mb": data_mb,
        "generate_peak_rss_mb": gen_peak_mb,
        "alloc_peak_rss_mb": alloc_peak_mb,
        "peak_rss_mb": _peak_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.orders, args.lines, args.items, args.child == "on")))
        return 0
    ok = True
    figures: dict[str, dict[str, object]] = {}
    for mode in ("off", "on"):
        cmd = [sys.executable, "-m", "bench.bench_allocation", "--child", mode,
               "--orders", str(args.orders), "--lines", str(args.lines), "--items", str(args.items)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rep = json.loads(out.strip().splitlines()[-1])
        print(
            f"allocation ICFULLQT {mode:>3}: {rep['orders']:,} order lines, {rep['contract_lines']:,} "
            f"contract lines, {rep['items']:,} items: {rep['wall_s']} s, "
            f"{rep['order_lines_per_s']:,} order lines/s, peak RSS {rep['peak_rss_mb']} MB; "
            f"DuckDB ASOF join floor {rep['asof_join_s']} s (ratio {rep['ratio_to_asof']}x); "
            f"linked {rep['linked']:,}, rejected {rep['rejected']:,}"
        )
        print(
            f"  memory: {rep['rss_with_data_mb']} MB with the data generated (generation peak "
            f"{rep['generate_peak_rss_mb']} MB), peak {rep['alloc_peak_rss_mb']} MB after allocation, "
            f"{rep['peak_rss_mb']} MB after the ASOF floor"
        )
        print(f"  reasons: {rep['reasons']}")
        figures[f"icfullqt_{mode}"] = {
            k: rep[k]
            for k in ("wall_s", "order_lines_per_s", "asof_join_s", "ratio_to_asof", "peak_rss_mb")
        }
        if args.orders >= 1_000_000:
            ok &= rep["order_lines_per_s"] >= 200_000 and rep["peak_rss_mb"] < 2048
    print("targets (>= 200,000 order lines/s, < 2 GB):", "met" if ok else "NOT met")
    print(
        json.dumps(
            {"bench": "allocation", "orders": args.orders, "contract_lines": args.lines,
             "items": args.items, **figures, "load": round(os.getloadavg()[0], 2)}
        )
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
