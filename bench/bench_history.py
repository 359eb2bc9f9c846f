"""Benchmark of year five (issue 17): does a night's cost grow with the store?

    python -m bench.bench_history               # 100M serials, 50M links (builds once, ~cached)
    python -m bench.bench_history --scale 0.1   # a tenth: a quick look
    python -m bench.bench_history --crash       # also the crash test on the history store

It builds (or takes from its cache under `bench/data/`, keyed by the scale, the
number of nights, the store format `connectors.ddl.STORE_FORMAT` and the generator's
version) a *history* store: a year of activity (`bench.history_gen`) — at full size
100M serials of 20 products and 200 CMOs, 60M assigned, 40M exported, commissioned
and packed, 30M shipped, 50M stored packing links, 18k export files, 10k contract
lines and 5M consumed order lines — run by default in 24 nights (`--nights`: the
year's totals stay, only its files are fewer and larger; 365 is one night a day, at
about ten seconds of fixed cost a night on a loaded machine).  Each night is real
inbox files run through the
product's own stages (`flows.pipeline`: prepare, scan, every apply stage, the output
writer); only the report folder of the history's nights is not written (its
bookkeeping is done as a report would do it).  It also builds a *fresh* store that
holds only the measured night's prerequisites (master data, contracts, the sender's
exported and packed serials).  The stores are built by the product's own loading
path, not written table by table, so the history store is exactly what a year of
nights leaves (the build checks every file applied whole, and the night's and the
open-and-check's §8 invariants are reported).

Then it runs the same night — a 2M-serial pool file, 100k generated serials, 1M
assigned, 500k exported in 50 files, a shipping document that commissions 150k
units and ships 200k (50k packed in an earlier document), 100k order lines — on a
copy of each store, alternating, `--reps` times, each night a whole `cmi run` in a
child process (`run_pipeline` with the default reports: CSVs, report.html,
report.xlsx).  It reports each stage's wall time and peak memory (VmHWM, reset per
stage) on both stores and their ratio, the store's size on disk per serial and per
stored link (DuckDB's blocks of the link tables are the links'; the rest the
serials'), and the time to open the store and check the invariants of §8; and `cmi validate`
of the night's inbox on each store (a dry run over a read-only view of it) before the night.

Targets: night on the history store <= 1.3x the fresh store; peak memory < 2 GB;
<= 20 bytes per serial, <= 40 bytes per link; open + check <= 2 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GENERATOR_VERSION = 1  # bump when bench.history_gen plans another history
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
LINK_TABLES = ("shipping_aggregation", "shipping_parents")
STATE_REPORTS = (
    "serial_balance.csv", "exported_files.csv", "contract_balance.csv", "lot_reconciliation.csv"
)  # fmt: skip


# ------------------------------------------------------------------ child side


def _peak_reset() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _settle(inbox: Path) -> None:
    past = time.time() - 3600
    for path in inbox.iterdir():
        if path.is_file():
            os.utime(path, (past, past))


def _config(people_reports: bool):  # type: ignore[no-untyped-def]
    from transforms.context import Config, InboxConfig, ReportsConfig

    return Config(
        inbox=InboxConfig(settle_seconds=0),
        reports=ReportsConfig(html=people_reports, xlsx=people_reports),
    )


def _check_outcome(
    label: str, files: list[dict[str, Any]], unexpected: list[str], rerun: bool = False
) -> None:
    # a night run again after a kill finds the files the killed run committed but had
    # not yet archived: those are duplicates (§8), the rest applies whole
    allowed = {"applied", "duplicate"} if rerun else {"applied"}
    bad = [f for f in files if f["outcome"] not in allowed or f["rows_rejected"]]
    if bad or unexpected:
        raise SystemExit(f"{label}: a file was not applied whole: {bad} {unexpected}")


def _close_night(run: Any) -> None:
    """What `write_reports` does to the state, without the report folder: the run's rows
    are claimed and confirmed as reported, the outputs awaited, the run finished."""
    import datetime as dt

    from connectors.store import transaction
    from flows.outputs import await_outputs
    from transforms import run_rows

    con = run.store.con
    with transaction(con):
        run_rows.claim_unreported(con, run.run_id)
    await_outputs(run)
    con.execute("UPDATE runs SET finished_at = ? WHERE run_id = ?", [dt.datetime.now(), run.run_id])
    with transaction(con):
        run_rows.confirm_reported(con, run.run_id)


def child_build(root: Path, scale: float, nights: int, fresh: bool) -> dict[str, Any]:
    """Build a store night by night through the product's stages (see the docstring)."""
    from bench.history_gen import HistoryShape, simulate
    from flows.pipeline import STAGES, RunPaths, apply_stage, finish, prepare, scan

    shape = HistoryShape(scale=scale, nights=nights)
    paths = RunPaths(root / "inbox", root / "outbox", root / "state" / "cmi.duckdb")
    paths.outbox.mkdir(parents=True, exist_ok=True)
    done = _finished_until(paths.state)
    if done is not None:
        print(f"  resuming a build whose nights up to {done:%Y-%m-%d} are in", file=sys.stderr)
    resumed = done is not None
    started = time.perf_counter()
    last = started
    for label, night in simulate(shape, fresh=fresh, done=done):
        night.write(paths.inbox)
        _settle(paths.inbox)
        run = prepare(paths, _config(False), night.as_of)
        run = scan(run)
        for stage, _kinds in STAGES:
            run = apply_stage(run, stage)
        _close_night(run)
        out = finish(run)
        # a resumed night finds the files it applied before the interruption again
        _check_outcome(label, out["files"], out["unexpected"], rerun=resumed)
        resumed = False
        # the archive and the written export files leave (a transfer tool takes those)
        shutil.rmtree(paths.inbox / "archive", ignore_errors=True)
        shutil.rmtree(paths.outbox / "serials", ignore_errors=True)
        now = time.perf_counter()
        if now - last > 30:
            print(f"  {label}: {now - started:.0f} s", file=sys.stderr, flush=True)
            last = now
    return {"build_s": round(time.perf_counter() - started, 1)}


def _finished_until(state: Path) -> Any:
    """The date of the last finished night in a store a killed build left (None: none)."""
    if not state.exists():
        return None
    import duckdb

    con = duckdb.connect(str(state))  # replays what the killed build left in the WAL
    try:
        row = con.execute("SELECT max(as_of) FROM runs WHERE finished_at IS NOT NULL").fetchone()
    finally:
        con.close()
    return row[0] if row else None


def child_night(root: Path, as_of: str, rerun: bool = False) -> dict[str, Any]:
    """One measured night: `run_pipeline` with a call that times every stage."""
    import datetime as dt

    from flows.pipeline import RunPaths, run_pipeline

    stages: dict[str, dict[str, float]] = {}

    def call(fn: Any, *args: Any) -> Any:
        name = args[1] if fn.__name__ == "apply_stage" else fn.__name__
        _peak_reset()
        t0 = time.perf_counter()
        result = fn(*args)
        stages[name] = {"s": round(time.perf_counter() - t0, 3), "peak_mb": round(_peak_mb())}
        return result

    paths = RunPaths(root / "inbox", root / "outbox", root / "state" / "cmi.duckdb")
    started = time.perf_counter()
    out = run_pipeline(call, paths, _config(True), dt.datetime.fromisoformat(as_of))
    wall = time.perf_counter() - started
    _check_outcome("the night", out["files"], out["unexpected"], rerun)
    import resource

    summary = json.loads((Path(out["report_dir"]) / "run_summary.json").read_text())
    return {
        "wall_s": round(wall, 3),
        # each stage's peak is reset when the next begins (ru_maxrss with it): the night's
        # is the highest of them
        "peak_mb": max(
            [round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)]
            + [stage["peak_mb"] for stage in stages.values()]
        ),
        "stages": stages,
        "durations_s": summary["durations_s"],
        "invariants": summary["invariants"],
    }


def child_check(state: Path) -> dict[str, Any]:
    """Open the store as a run does and check the invariants of §8 as a night's end does."""
    from connectors.store import open_store
    from transforms import contract_reports, reports

    t0 = time.perf_counter()
    store = open_store(state)
    opened = time.perf_counter()
    con = store.con
    balance = reports.serial_balance_report(con)
    invariants = reports.serial_invariants(con, balance, reports.pool_sizes(con))
    invariants.update(contract_reports.contract_invariants(con))
    checked = time.perf_counter()
    store.close()
    return {
        "open_s": round(opened - t0, 3),
        "check_s": round(checked - opened, 3),
        "open_and_check_s": round(checked - t0, 3),
        "invariants": invariants,
    }


def child_validate(root: Path, as_of: str) -> dict[str, Any]:
    """`cmi validate` of the night's inbox against the store, as an operator runs it the
    day before: a dry run over a read-only view of the store (nothing changes)."""
    import datetime as dt
    import resource

    from flows.validate import validate_inbox

    t0 = time.perf_counter()
    found = validate_inbox(root / "inbox", root / "state" / "cmi.duckdb", _config(False),
                           dt.datetime.fromisoformat(as_of), root / "validate")  # fmt: skip
    wall = time.perf_counter() - t0
    if found.unexpected or found.would_reject:
        raise SystemExit(f"validate of the night: {found.unexpected or found.files}")
    return {
        "wall_s": round(wall, 3),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def child_migrate(state: Path) -> dict[str, Any]:
    """Open a store of an older format as a run does: the product migrates it."""
    from connectors.store import open_store

    t0 = time.perf_counter()
    open_store(state).close()
    return {"migrate_s": round(time.perf_counter() - t0, 1)}


def child_facts(state: Path) -> dict[str, Any]:
    """Counts and sizes of a store."""
    import duckdb

    con = duckdb.connect(str(state), read_only=True)

    def one(sql: str) -> Any:
        row = con.execute(sql).fetchone()
        return row[0] if row else None

    facts: dict[str, Any] = {
        "serials": int(one("SELECT coalesce(sum(size), 0) FROM serial_products")),
        "assigned": int(one("SELECT coalesce(sum(hi - lo), 0) FROM serial_runs WHERE cmo_id IS NOT NULL")),
        "exported": int(one("SELECT coalesce(sum(hi - lo), 0) FROM serial_runs WHERE export_count > 0")),
        "commissioned": int(one("SELECT coalesce(sum(hi - lo), 0) FROM serial_runs WHERE commissioned")),
        "shipped": int(one("SELECT coalesce(sum(hi - lo), 0) FROM serial_runs WHERE shipped")),
        "runs": int(one("SELECT count(*) FROM serial_runs")),
        "links": int(one("SELECT count(*) FROM shipping_aggregation")),
        "export_files": int(one("SELECT count(*) FROM outbox_files WHERE kind = 'export'")),
        "contract_lines": int(one("SELECT count(*) FROM contract_lines")),
        "order_lines": int(one("SELECT count(*) FROM contract_order_lines")),
        "nights": int(one("SELECT count(*) FROM runs")),
    }  # fmt: skip
    block = int(one("SELECT block_size FROM pragma_database_size()") or 262144)
    blocks: dict[str, int] = {}
    for (table,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall():
        ids = one(
            f"""SELECT count(DISTINCT b) FROM (
                SELECT block_id AS b FROM pragma_storage_info('{table}') WHERE block_id >= 0
                UNION ALL
                SELECT unnest(additional_block_ids) FROM pragma_storage_info('{table}'))"""
        )
        blocks[table] = int(ids)
    free = int(one("SELECT free_blocks FROM pragma_database_size()") or 0)
    con.close()
    # the file less the blocks DuckDB holds free for later writes (a migrated store has
    # the old pool's; a built one next to none): what the store takes
    size = state.stat().st_size - free * block
    link_bytes = sum(blocks.get(t, 0) for t in LINK_TABLES) * block
    facts.update(
        file_bytes=state.stat().st_size,
        free_bytes=free * block,
        link_bytes=link_bytes,
        table_mb={t: round(n * block / 2**20, 1) for t, n in sorted(blocks.items()) if n},
        bytes_per_serial=round((size - link_bytes) / max(1, facts["serials"]), 2),
        bytes_per_link=round(link_bytes / max(1, facts["links"]), 2),
    )
    return facts


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["build", "night", "check", "facts", "migrate", "validate"])
    parser.add_argument("--root", type=Path)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--nights", type=int, default=24)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--as-of", default="")
    parser.add_argument("--rerun", action="store_true")
    opts = parser.parse_args(argv)
    state = opts.root / "state" / "cmi.duckdb"
    if opts.what == "build":
        result = child_build(opts.root, opts.scale, opts.nights, opts.fresh)
    elif opts.what == "night":
        result = child_night(opts.root, opts.as_of, opts.rerun)
    elif opts.what == "check":
        result = child_check(state)
    elif opts.what == "validate":
        result = child_validate(opts.root, opts.as_of)
    elif opts.what == "migrate":
        result = child_migrate(state)
    else:
        result = child_facts(state)
    print(json.dumps(result))


# ------------------------------------------------------------------ parent side


def _child_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.bench_history", "--child", *args]


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def child(*args: str) -> dict[str, Any]:
    env = _child_env()
    out = subprocess.run(
        _child_cmd(*args),
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    if out.returncode:
        raise SystemExit(f"bench child {args[0]} failed:\n{out.stderr[-4000:]}")
    sys.stderr.write(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def store_format() -> int:
    sys.path.insert(0, str(ROOT))
    from connectors.ddl import STORE_FORMAT

    return STORE_FORMAT


def cached_store(
    kind: str, scale: float, nights: int, rebuild: bool
) -> tuple[Path, dict[str, Any]]:
    """The built store of `kind` (history / fresh), from the cache when it is there."""
    key = f"{kind}-s{scale:g}-n{nights}-f{store_format()}-g{GENERATOR_VERSION}"
    where = DATA / key
    manifest = where / "manifest.json"
    if manifest.exists() and not rebuild:
        return where, json.loads(manifest.read_text())
    shutil.rmtree(where, ignore_errors=True)
    building = DATA / (key + ".building")
    older = None if rebuild else _older_format(kind, scale, nights)
    if older is not None:  # the store a customer has: migrated when the product opens it
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        print(f"migrating the {kind} store {older.name} to format {store_format()} …", flush=True)
        shutil.copytree(older / "state", building / "state")
        migrated = child("migrate", "--root", str(building))
        facts = child("facts", "--root", str(building))
        built = json.loads((older / "manifest.json").read_text())
        info = {"key": key, "build_s": built.get("build_s"), **migrated, **facts}
        (building / "manifest.json").write_text(json.dumps(info, indent=1))
        building.rename(where)
        print(f"  migrated in {migrated['migrate_s']} s: {json.dumps(facts)}", flush=True)
        return where, info
    if rebuild or not (building / "state" / "cmi.duckdb").exists():
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        print(f"building the {kind} store ({key}) …", flush=True)
    else:  # a build killed half-way goes on from its last finished night
        print(f"resuming the build of the {kind} store ({key}) …", flush=True)
    args = ["build", "--root", str(building), "--scale", str(scale), "--nights", str(nights)]
    built = child(*args, *(["--fresh"] if kind == "fresh" else []))
    shutil.rmtree(building / "inbox", ignore_errors=True)
    shutil.rmtree(building / "outbox", ignore_errors=True)
    facts = child("facts", "--root", str(building))
    info = {"key": key, **built, **facts}
    (building / "manifest.json").write_text(json.dumps(info, indent=1))
    building.rename(where)
    print(f"  built in {built['build_s']} s: {json.dumps(facts)}", flush=True)
    return where, info


def _older_format(kind: str, scale: float, nights: int) -> Path | None:
    """A built store of the same history in an older store format, the newest one."""
    for fmt in range(store_format() - 1, 0, -1):
        older = DATA / f"{kind}-s{scale:g}-n{nights}-f{fmt}-g{GENERATOR_VERSION}"
        if (older / "manifest.json").exists():
            return older
    return None


def _night_inbox(kind: str, scale: float, nights: int, into: Path) -> str:
    sys.path.insert(0, str(ROOT))
    from bench.history_gen import HistoryShape, final_plan, night_files

    shape = HistoryShape(scale=scale, nights=nights)
    night = night_files(shape, final_plan(shape, fresh=kind == "fresh"))
    night.write(into)
    return night.as_of.isoformat()


def _copy_store(src: Path, work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    (work / "state").mkdir(parents=True)
    for f in (src / "state").iterdir():
        if f.is_file() and not f.name.endswith(".lock"):
            shutil.copyfile(f, work / "state" / f.name)


def _night_outputs(root: Path) -> dict[str, str]:
    """What a night leaves for the CMOs and for people, by SHA-256: every export file and
    partner answer, and the state reports of its report folder."""
    out = root / "outbox"
    files = {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for sub in ("serials", "partners")
        for p in sorted((out / sub).rglob("*.csv"))
    }
    latest = out / "reports" / (out / "reports" / "LATEST").read_text().strip()
    for name in STATE_REPORTS:
        files[name] = hashlib.sha256((latest / name).read_bytes()).hexdigest()
    return files


def _night_root(store: Path, inbox: Path, root: Path) -> Path:
    _copy_store(store, root)
    shutil.copytree(inbox, root / "inbox")
    _settle(root / "inbox")
    os.sync()
    return root


def crash_test(
    store: Path, inbox: Path, as_of: str, work: Path, fractions: list[float]
) -> list[dict[str, Any]]:
    """The night on a copy of `store`, killed (SIGKILL) at each fraction of an
    uninterrupted night's wall time, then run again: the rerun must leave the same
    export files, partner answers and state reports as the uninterrupted night, every
    inbox file processed, and §8's invariants holding (SPEC §8, issue 17)."""
    ref = _night_root(store, inbox, work / "crash-ref")
    wall = child("night", "--root", str(ref), "--as-of", as_of)["wall_s"]
    expected = _night_outputs(ref)
    shutil.rmtree(ref)
    results = []
    for fraction in fractions:
        root = _night_root(store, inbox, work / "crash")
        proc = subprocess.Popen(
            _child_cmd("night", "--root", str(root), "--as-of", as_of),
            env=_child_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(wall * fraction)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        child("night", "--root", str(root), "--as-of", as_of, "--rerun")
        got = _night_outputs(root)
        left = [p.name for p in (root / "inbox").iterdir() if p.is_file()]
        check = child("check", "--root", str(root))
        same = got == expected
        differ = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
        results.append(
            {"at": fraction, "killed_running": killed, "same_outputs": same, "differ": differ[:5],
             "inbox_left": left, "invariants_hold": all(check["invariants"].values())}
        )  # fmt: skip
        print(
            f"  crash at {fraction:.0%} of {wall:.1f} s ({'killed' if killed else 'had ended'}): "
            f"rerun {'equals' if same else 'DIFFERS from'} the uninterrupted night"
            f"{'' if same else ' ' + str(differ[:5])}; inbox left {left}; invariants "
            f"{'hold' if results[-1]['invariants_hold'] else 'FAIL'}",
            flush=True,
        )
        shutil.rmtree(root)
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--nights", type=int, default=24, help="nights the year of history is run in"
    )
    parser.add_argument("--reps", type=int, default=3, help="nights measured on each store")
    parser.add_argument("--rebuild", action="store_true", help="build the stores again")
    parser.add_argument("--work", type=Path, default=DATA / "work", help="scratch folder")
    parser.add_argument(
        "--crash",
        action="store_true",
        help="also kill the night on the history store at 20/50/80%% of its time and run it "
        "again: the same outputs as an uninterrupted night, invariants holding",
    )
    opts = parser.parse_args()
    load_start = os.getloadavg()
    stores = {
        k: cached_store(k, opts.scale, opts.nights, opts.rebuild) for k in ("history", "fresh")
    }
    work = opts.work
    inboxes = {}
    for kind in stores:
        inbox = work / f"inbox-{kind}"
        shutil.rmtree(inbox, ignore_errors=True)
        as_of = _night_inbox(kind, opts.scale, opts.nights, inbox)
        inboxes[kind] = inbox
    results: dict[str, list[dict[str, Any]]] = {"history": [], "fresh": []}
    checks: dict[str, list[dict[str, Any]]] = {"history": [], "fresh": []}
    validations: dict[str, list[dict[str, Any]]] = {"history": [], "fresh": []}
    for rep in range(opts.reps):
        order = ["history", "fresh"] if rep % 2 == 0 else ["fresh", "history"]
        for kind in order:
            root = work / "night"
            _copy_store(stores[kind][0], root)
            checks[kind].append(child("check", "--root", str(root)))
            shutil.copytree(inboxes[kind], root / "inbox")
            _settle(root / "inbox")
            validations[kind].append(child("validate", "--root", str(root), "--as-of", as_of))
            os.sync()
            result = child("night", "--root", str(root), "--as-of", as_of)
            results[kind].append(result)
            print(
                f"  rep {rep + 1} {kind:<7}: night {result['wall_s']:.2f} s, peak "
                f"{result['peak_mb']} MB; open+check {checks[kind][-1]['open_and_check_s']:.2f} s; "
                f"validate {validations[kind][-1]['wall_s']:.2f} s, "
                f"{validations[kind][-1]['peak_mb']} MB",
                flush=True,
            )
    shutil.rmtree(work / "night", ignore_errors=True)
    crashes = []
    if opts.crash:
        print("crash test on the history store:", flush=True)
        crashes = crash_test(stores["history"][0], inboxes["history"], as_of, work, [0.2, 0.5, 0.8])
    load_end = os.getloadavg()
    report(opts, stores, results, checks, validations, (load_start, load_end))
    if any(
        not (c["same_outputs"] and c["invariants_hold"] and not c["inbox_left"]) for c in crashes
    ):
        raise SystemExit("the crash test failed: a rerun after a kill differs (see above)")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def report(
    opts: argparse.Namespace,
    stores: dict[str, tuple[Path, dict[str, Any]]],
    results: dict[str, list[dict[str, Any]]],
    checks: dict[str, list[dict[str, Any]]],
    validations: dict[str, list[dict[str, Any]]],
    loads: tuple[tuple[float, ...], tuple[float, ...]],
) -> None:
    hist, fresh = stores["history"][1], stores["fresh"][1]
    print()
    print(
        f"history store: {hist['serials']:,} serials ({hist['assigned']:,} assigned, "
        f"{hist['exported']:,} exported, {hist['commissioned']:,} commissioned, "
        f"{hist['shipped']:,} shipped; {hist['runs']:,} runs), {hist['links']:,} links, "
        f"{hist['export_files']:,} export files, {hist['contract_lines']:,} contract lines, "
        f"{hist['order_lines']:,} order lines, {hist['nights']} nights; "
        f"{hist['file_bytes'] / 2**30:.2f} GiB"
        + (
            f" ({hist['free_bytes'] / 2**30:.2f} GiB of it free blocks)"
            if hist.get("free_bytes")
            else ""
        )
    )
    print(f"  tables (MiB): {hist['table_mb']}")
    print(
        f"  {hist['bytes_per_serial']:.1f} bytes per serial, {hist['bytes_per_link']:.1f} "
        "bytes per stored link"
    )
    print(f"fresh store: {fresh['serials']:,} serials, {fresh['links']:,} links")
    names = list(results["history"][0]["stages"])
    print()
    print(
        f"{'stage':<18} {'history s':>10} {'fresh s':>9} {'ratio':>6} {'hist MB':>8} {'fresh MB':>9}"
    )
    for name in names:
        h = _median([r["stages"][name]["s"] for r in results["history"]])
        f = _median([r["stages"][name]["s"] for r in results["fresh"]])
        hm = max(r["stages"][name]["peak_mb"] for r in results["history"])
        fm = max(r["stages"][name]["peak_mb"] for r in results["fresh"])
        ratio = h / f if f > 0 else float("nan")
        print(f"{name:<18} {h:>10.2f} {f:>9.2f} {ratio:>6.2f} {hm:>8.0f} {fm:>9.0f}")
    night_h = _median([r["wall_s"] for r in results["history"]])
    night_f = _median([r["wall_s"] for r in results["fresh"]])
    peak = max(r["peak_mb"] for k in results for r in results[k])
    print(
        f"{'night':<18} {night_h:>10.2f} {night_f:>9.2f} {night_h / night_f:>6.2f} "
        f"{max(r['peak_mb'] for r in results['history']):>8.0f} "
        f"{max(r['peak_mb'] for r in results['fresh']):>9.0f}"
    )
    print("  nights: history " + " ".join(f"{r['wall_s']:.2f}" for r in results["history"])
          + " s; fresh " + " ".join(f"{r['wall_s']:.2f}" for r in results["fresh"]) + " s")  # fmt: skip
    oc = _median([c["open_and_check_s"] for c in checks["history"]])
    oc_f = _median([c["open_and_check_s"] for c in checks["fresh"]])
    print(
        f"open + check §8 invariants: history {oc:.2f} s (open "
        f"{_median([c['open_s'] for c in checks['history']]):.2f} s), fresh {oc_f:.2f} s"
    )
    val_h = _median([v["wall_s"] for v in validations["history"]])
    val_f = _median([v["wall_s"] for v in validations["fresh"]])
    val_peak = max(v["peak_mb"] for k in validations for v in validations[k])
    print(
        f"cmi validate of the night: history {val_h:.2f} s, fresh {val_f:.2f} s; peak {val_peak} MB"
    )
    failed = sorted(
        {k for r in [*results["history"], *results["fresh"]] for k, v in r["invariants"].items() if not v}
        | {k for c in [*checks["history"], *checks["fresh"]] for k, v in c["invariants"].items() if not v}
    )  # fmt: skip
    print(f"invariants: {'all hold' if not failed else 'FAILED ' + ', '.join(failed)}")
    print(f"medians of {opts.reps} nights on each store, alternating; load average "
          f"{' '.join(f'{x:.2f}' for x in loads[0])} at the start, "
          f"{' '.join(f'{x:.2f}' for x in loads[1])} at the end")  # fmt: skip
    print("targets: ratio <= 1.3, peak < 2048 MB, <= 20 B/serial, <= 40 B/link, open+check <= 2 s")
    print(
        json.dumps(
            {
                "bench": "history",
                "scale": opts.scale,
                "serials": hist["serials"],
                "links": hist["links"],
                "night_fresh_s": round(night_f, 3),
                "night_history_s": round(night_h, 3),
                "ratio": round(night_h / night_f, 3),
                "peak_mb": round(peak),
                "bytes_per_serial": hist["bytes_per_serial"],
                "bytes_per_link": hist["bytes_per_link"],
                "open_and_check_s": round(oc, 3),
                "validate_history_s": round(val_h, 3),
                "validate_fresh_s": round(val_f, 3),
                "validate_peak_mb": val_peak,
            }
        )
    )


if __name__ == "__main__":
    main()
