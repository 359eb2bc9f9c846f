"""Delivery benchmark (issue 18, SPEC §8.1): the 2M-serial export day — 100 export files for
5 CMOs — delivered to a real OpenSSH server on loopback, against a plain `sftp -b` upload
of the same files in the same run.

The export day is made by the real pipeline (master data, a pool, assignments, exports)
once; then, `--reps` times, alternating: the product's delivery (`deliver_pending`: one SFTP
connection per CMO, each file uploaded under `.<name>.part`, fsynced, renamed, and marked
delivered in the state) into fresh folders, and OpenSSH's own client uploading the same
100 files over one connection (`sftp -b`, `put` into the same folder layout).  The server
is started here (tests/servers/sshd.py), with its own host and user keys.  Reported:
files/s and MB/s of both, and the ratio of the medians; target <= 1.5.  The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CMOS = 5
PRODUCTS = 10


def _export_day(root: Path, serials: int, files: int) -> None:
    """The state and outbox of an export day: `serials` serials exported in `files` files."""
    from bench.serials_gen import write_master, write_pool, write_requests
    from flows.pipeline import RunPaths, run_local
    from transforms.context import Config, InboxConfig

    inbox = root / "inbox"
    codes, cmos = write_master(inbox, PRODUCTS, CMOS)
    write_pool(inbox / "serial_pool_bench.csv", codes, serials)
    write_requests(inbox / "assignments_bench.csv", codes, cmos, files, serials, CMOS * PRODUCTS)
    write_requests(inbox / "exports_bench.csv", codes, cmos, files, serials, CMOS * PRODUCTS)
    past = time.time() - 60
    for p in inbox.iterdir():
        os.utime(p, (past, past))
    out = run_local(
        RunPaths(inbox, root / "outbox", root / "state" / "cmi.duckdb"),
        Config(inbox=InboxConfig(settle_seconds=0)),
        dt.datetime(2026, 11, 23, 2, 0, 0),
    )
    assert not out["unexpected"], out["unexpected"]


def _targets(server: object, rep: int) -> tuple[object, ...]:
    from transforms.context import DeliveryTarget

    return tuple(
        DeliveryTarget(f"CMO{i:03d}", server.url(f"ours{rep}/CMO{i:03d}"),  # type: ignore[attr-defined]
                       key_file=str(server.user_key), known_hosts=str(server.known_hosts))  # type: ignore[attr-defined]
        for i in range(CMOS)
    )  # fmt: skip


def _ours(root: Path, server: object, rep: int) -> tuple[float, int]:
    """The product's delivery of every export file, from a state where none is delivered."""
    from connectors.store import open_store
    from flows.delivery_stage import deliver_pending

    store = open_store(root / "state" / "cmi.duckdb")
    try:
        con = store.con
        con.execute(
            "UPDATE outbox_files SET delivered_at = NULL, delivered_to = NULL, delivery_attempts = 0"
        )
        con.execute("CHECKPOINT")
        targets = _targets(server, rep)
        started = time.perf_counter()
        rows = deliver_pending(con, root / "outbox", targets, dt.datetime(2026, 11, 23, 2, 0, 0))  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
    finally:
        store.close()
    bad = [r for r in rows if r.outcome != "delivered"]
    assert not bad, bad[:3]
    return seconds, len(rows)


def _plain(root: Path, server: object, rep: int, work: Path) -> float:
    """OpenSSH's sftp client putting the same files into the same layout, one connection."""
    srv = server
    batch = work / f"plain{rep}.batch"
    lines = []
    for cmo in sorted((root / "outbox" / "serials").iterdir()):
        dest = srv.root / f"plain{rep}" / cmo.name  # type: ignore[attr-defined]
        dest.mkdir(parents=True)
        lines += [f'put "{f}" "{dest / f.name}"' for f in sorted(cmo.glob("*.csv"))]
    batch.write_text("\n".join(lines) + "\n")
    cmd = ["sftp", "-q", "-b", str(batch), "-i", str(srv.user_key), "-P", str(srv.port),  # type: ignore[attr-defined]
           "-o", f"UserKnownHostsFile={srv.known_hosts}", "-o", "StrictHostKeyChecking=yes",  # type: ignore[attr-defined]
           "-o", "BatchMode=yes", "-F", "/dev/null", "root@127.0.0.1"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serials", type=int, default=2_000_000, help="serials exported that day")
    parser.add_argument("--files", type=int, default=100, help="export files that day")
    parser.add_argument("--reps", type=int, default=5, help="runs of each, alternating")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    opts = parser.parse_args()

    from tests.servers.sshd import SshServer

    work = Path(tempfile.mkdtemp(prefix="cmi-bench-delivery-"))
    root = work / "day"
    # sshd's internal-sftp, as production servers run it (no shell started per session)
    server = SshServer(work / "sshd", log_sftp=False)
    server.start()
    try:
        t = time.perf_counter()
        print(
            f"making the export day: {opts.serials:,} serials in {opts.files} files for {CMOS} CMOs …"
        )
        _export_day(root, opts.serials, opts.files)
        files = sorted((root / "outbox" / "serials").rglob("*.csv"))
        size = sum(f.stat().st_size for f in files)
        print(f"  {len(files)} files, {size / 1e6:.1f} MB, made in {time.perf_counter() - t:.1f}s")
        assert len(files) == opts.files, len(files)
        ours, plain = [], []
        for rep in range(opts.reps):
            # alternating which goes first, so neither always meets a warm or a cold cache
            for side in ("ours", "plain") if rep % 2 == 0 else ("plain", "ours"):
                os.sync()
                if side == "ours":
                    seconds, n = _ours(root, server, rep)
                    assert n == len(files)
                    ours.append(seconds)
                else:
                    plain.append(_plain(root, server, rep, work))
            for side in (f"ours{rep}", f"plain{rep}"):
                got = sorted(
                    p.relative_to(server.root / side) for p in (server.root / side).rglob("*.csv")
                )
                assert got == [f.relative_to(root / "outbox" / "serials") for f in files], side
                shutil.rmtree(server.root / side)
            print(f"  rep {rep + 1}: cmi {seconds:.3f}s, sftp -b {plain[-1]:.3f}s")
    finally:
        server.stop()
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    load = os.getloadavg()[0]
    print()
    print(f"{'':<10} {'seconds':>8} {'files/s':>8} {'MB/s':>7}")
    for name, s in (("cmi", ours_s), ("sftp -b", plain_s)):
        print(f"{name:<10} {s:>8.3f} {len(files) / s:>8.1f} {size / 1e6 / s:>7.1f}")
    print(f"ratio {ours_s / plain_s:.2f} (target <= 1.5); medians of {opts.reps}, alternating; "
          f"load average {load:.2f}")  # fmt: skip
    print(json.dumps({"bench": "delivery", "files": len(files), "seconds": round(ours_s, 3),
                      "plain_seconds": round(plain_s, 3), "ratio": round(ours_s / plain_s, 3),
                      "mb": round(size / 1e6, 1), "load": round(load, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
