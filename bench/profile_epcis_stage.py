"""Time `connectors.epcis.stage_document` alone against a bare lxml pass (SPEC §6).

Each measurement runs in a fresh child process (so peak RSS belongs to it), on a
file-backed store opened as the product opens it.  Staged rows are counted and
fingerprinted, so that a faster reader can be checked to stage the same thing.

    python -m bench.profile_epcis_stage --doc /tmp/eb/shipping_bench_1000000.xml
    python -m bench.profile_epcis_stage --doc ... --profile   # cProfile of one stage
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _bare(doc: Path) -> dict[str, object]:
    from lxml import etree

    texts: list[str | None] = []
    started = time.perf_counter()
    for _, el in etree.iterparse(str(doc), events=("end",), tag=("epc", "parentID")):
        texts.append(el.text)
        el.clear()
    return {"wall_s": time.perf_counter() - started, "peak_mb": _peak_mb()}


def _stage(doc: Path, profile: bool, check: bool) -> dict[str, object]:
    from connectors.epcis import stage_document
    from connectors.store import open_store
    from schemas.shipping import STAGE_EPCS, STAGE_EVENTS, STAGE_PARTIES

    with tempfile.TemporaryDirectory(prefix="profile_epcis_") as tmp:
        store = open_store(Path(tmp) / "state.duckdb")
        con = store.con
        started = time.perf_counter()
        if profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            info = prof.runcall(stage_document, con, doc)
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        else:
            info = stage_document(con, doc)
        wall = time.perf_counter() - started
        out: dict[str, object] = {"wall_s": wall, "peak_mb": _peak_mb()}
        if check:
            prints = {}
            for table in (STAGE_EVENTS, STAGE_EPCS, STAGE_PARTIES):
                prints[table] = con.execute(
                    f"SELECT count(*), sum(hash(COLUMNS(*))) FROM {table}"
                ).fetchone()
            out["fingerprint"] = repr(prints)
            out["info"] = repr(info)
        store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--doc", type=Path, default=Path("/tmp/eb/shipping_bench_1000000.xml"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--check", action="store_true", help="fingerprint the staged rows")
    parser.add_argument("--no-bare", action="store_true")
    parser.add_argument("--child", choices=["bare", "stage"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "bare":
        print(json.dumps(_bare(args.doc)))
        return
    if args.child == "stage":
        print(json.dumps(_stage(args.doc, args.profile, args.check)))
        return
    if args.profile:
        cmd = [sys.executable, "-m", "bench.profile_epcis_stage", "--child", "stage"]
        subprocess.run([*cmd, "--doc", str(args.doc), "--profile"], check=True)
        return
    rows = []
    for rep in range(args.reps):
        for mode in ("bare", "stage"):
            if mode == "bare" and args.no_bare:
                continue
            cmd = [sys.executable, "-m", "bench.profile_epcis_stage", "--child", mode]
            cmd += ["--doc", str(args.doc)]
            if mode == "stage" and args.check and rep == 0:
                cmd.append("--check")
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            rows.append((mode, out))
            print(mode, json.dumps(out), flush=True)
    for mode in ("bare", "stage"):
        walls = sorted(float(o["wall_s"]) for m, o in rows if m == mode)  # type: ignore[arg-type]
        if walls:
            print(f"{mode}: median {walls[len(walls) // 2]:.2f} s, min {walls[0]:.2f} s")


if __name__ == "__main__":
    main()
