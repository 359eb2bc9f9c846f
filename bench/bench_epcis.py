"""Benchmark: one TraceLink shipping document of N shipped SGTINs, end to end (SPEC §6).

For a generated document (`bench.epcis_gen`: commissioning per case, units →
cases → pallets, one shipping event listing the pallets), written once as EPCIS 1.2
XML and once as EPCIS 2.0 JSON-LD, it measures, each in a fresh child process so
that peak RSS (`ru_maxrss`) belongs to that measurement:

- `bare`: a bare `lxml.etree.iterparse` pass that only collects the text of every
  `<epc>` and `<parentID>` (clearing each element) — the floor for reading the XML;
- `full`: `stage_document` + `reconcile_document` + COMMIT of the XML against a
  file-backed state store that holds the N serials assigned to the sending CMO (the
  setup is not timed): parse, expand the hierarchy, reconcile, update the state;
- `bare_json`: a bare pass of the same streaming JSON parser the product uses
  (ijson's C backend, `basic_parse`) that only collects every EPC string (the
  strings of every EPC list and every parentID) — the floor for reading the JSON-LD;
- `full_json`: the same as `full` for the JSON-LD document;
- `items_json`: ijson's C backend building every event object
  (`items(..., "epcisBody.eventList.item")`, what the reader's fast path parses
  with) and nothing else — what reading the JSON-LD costs before the reader does
  anything with an event.

The floor: `floor_ratio` is (`items_json` + the reconciliation of `full_json`) /
`bare_json` — the ratio a reader whose own work (per-event rules, EPC parsing and
keying, staging) cost nothing would reach with the reconciliation both syntaxes
share; for XML, 1 + reconciliation / bare.  A target below the floor cannot be met
by the reader: only by a faster reconciliation.

Measurements alternate (bare, full, bare, full, ...; then the same for JSON-LD) so
that both of a pair see the same machine load; each ratio is taken between their
medians.  Documents twice as large are measured once more to show that memory does
not double.  With `--stored N`, `full` is measured once more against a store that
already holds N links of the sender's earlier documents (units in cases in pallets,
none of them in this document): the stored hierarchy grows every night, the
reconciliation of one document must not grow with it.

    python -m bench.bench_epcis                  # 1,000,000 SGTINs (~200 MB) and 2x
    python -m bench.bench_epcis --sgtins 20000   # small, quick
    python -m bench.bench_epcis --no-double --stored 10000000

Each measurement also reports its CPU seconds (`time.process_time`: the whole
process, DuckDB's and Polars' threads included): `full_cpu_s` (`parse_cpu_s`,
`reconcile_cpu_s`) and `cpu_ratio` to the bare pass's.  The targets are wall ratios;
the CPU figures compare two versions of the code on a machine too loaded for wall
times (the bare passes use one core, `full` up to all of them).

Targets: XML full ≤ 2 × bare, JSON-LD full ≤ 2.5 × bare_json, peak RSS < 1 GB, a
document twice as large < 1.2 × the memory.  The last line is one JSON object with
the results and `xml_ratio`, `xml_peak_mb`, `jsonld_ratio`, `jsonld_peak_mb`,
`xml_cpu_ratio`, `jsonld_cpu_ratio`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.epcis_gen import (
    CASE_ITEM_REF,
    COMPANY_PREFIX,
    SENDER_SGLN,
    SERIAL_MULTIPLIER,
    UNIT_ITEM_REF,
    Shape,
    write_document,
    write_document_jsonld,
)

TARGET_RATIO = 2.0
TARGET_JSONLD_RATIO = 2.5
TARGET_PEAK_MB = 1024
_EPC_KEYS = frozenset({"epcList", "childEPCs", "outputEPCList", "inputEPCList"})


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _measured(started: float, cpu: float, **counts: int) -> dict[str, object]:
    """A bare child's figures: wall and CPU seconds since `started` / `cpu`, what it
    counted, its peak RSS."""
    return {
        "wall_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        **counts,
        "peak_mb": _peak_mb(),
    }


def _child_bare(doc: Path) -> dict[str, object]:
    from lxml import etree

    texts: list[str | None] = []
    started, cpu = time.perf_counter(), time.process_time()
    for _, el in etree.iterparse(str(doc), events=("end",), tag=("epc", "parentID")):
        texts.append(el.text)
        el.clear()
    return _measured(started, cpu, texts=len(texts))


def _child_bare_json(doc: Path) -> dict[str, object]:
    import ijson

    texts: list[str] = []
    keep = texts.append
    in_list, key = False, None
    started, cpu = time.perf_counter(), time.process_time()
    with doc.open("rb") as fh:
        for token, value in ijson.basic_parse(fh, use_float=True, buf_size=1 << 20):
            if in_list:
                if token == "string":
                    keep(value)
                    continue
                in_list = False
            if token == "map_key":
                key = value
            elif token == "start_array":
                in_list = key in _EPC_KEYS
            elif token == "string" and key == "parentID":
                keep(value)
    return _measured(started, cpu, texts=len(texts))


def _child_items_json(doc: Path) -> dict[str, object]:
    import ijson

    events = 0
    started, cpu = time.perf_counter(), time.process_time()
    with doc.open("rb") as fh:
        for _ in ijson.items(fh, "epcisBody.eventList.item", use_float=True, buf_size=1 << 20):
            events += 1
    return _measured(started, cpu, events=events)


def _setup_state(db: Path, shape: Shape, stored: int = 0) -> object:
    """The state store as the product opens it (memory limit, storage settings, all DDL);
    `stored` links of earlier documents of the sender (20 units per case, 50 cases per
    pallet), keyed as the product keys them."""
    from connectors.store import open_store
    from transforms.codes import serial_num_sql, serial_txt_sql
    from transforms.epc import parse_epc

    con = open_store(db).con
    con.execute(
        "INSERT INTO cmos (cmo_id, cmo_name, sgln) VALUES ('CMO1', 'Bench CMO', ?)", [SENDER_SGLN]
    )
    gtins = {
        ref: parse_epc(f"urn:epc:id:sgtin:{COMPANY_PREFIX}.{ref}.1").product_code
        for ref in (UNIT_ITEM_REF, CASE_ITEM_REF)
    }
    for pos, gtin in enumerate(gtins.values()):
        con.execute("INSERT INTO cmo_products VALUES ('CMO1', ?, ?)", [gtin, pos])
    # the serials the document commissions (units, then cases), made inside DuckDB so
    # that the setup leaves no Python-side memory behind in the measured process
    unit_gtin, case_gtin = gtins[UNIT_ITEM_REF], gtins[CASE_ITEM_REF]
    units, cases = shape.units, shape.total_sgtins - shape.units
    con.execute(
        "INSERT INTO serial_products VALUES (?, 1, ?), (?, 2, ?)",
        [unit_gtin, units, case_gtin, cases],
    )
    con.execute(
        f"""INSERT INTO pool
        SELECT pid, pseq, {serial_num_sql("s")}, {serial_txt_sql("s")} FROM (
            SELECT CASE WHEN i < {units} THEN 1 ELSE 2 END AS pid,
                CASE WHEN i < {units} THEN i ELSE i - {units} END AS pseq,
                lpad(((i * {SERIAL_MULTIPLIER}) % 1000000000000)::VARCHAR, 12, '0') AS s
            FROM range({shape.total_sgtins}) t(i))"""
    )
    con.execute(
        f"""INSERT INTO serial_runs VALUES
            (1, 0, {units}, 'CMO1', 1, 0, NULL, NULL, FALSE, FALSE, NULL, NULL, FALSE),
            (2, 0, {cases}, 'CMO1', {units + 1}, 0, NULL, NULL, FALSE, FALSE, NULL, NULL, FALSE)"""
    )
    con.execute(
        f"INSERT INTO pool_loads VALUES (1, 0, {units}, 'pool', 'bench', NULL), "
        f"(2, 0, {cases}, 'pool', 'bench', NULL)"
    )
    if stored:
        _store_links(con, stored)
    con.execute("CHECKPOINT")
    return con


def _store_links(con: object, stored: int) -> None:
    """`stored` links of earlier documents of CMO1 (20 units per case, 50 cases per
    pallet, none of them in the benchmark document), keyed by the product's own key
    (`transforms.epc.epc_key_sql`) of what its parser reads from each URI."""
    import polars as pl

    from transforms.epc import epc_key_sql, parse_epc

    def serial(number: str) -> str:  # never a serial of the document
        return f"'X' || lpad(({number})::VARCHAR, 11, '0')"

    unit, case = (
        parse_epc(f"urn:epc:id:sgtin:{COMPANY_PREFIX}.{ref}.1").product_code
        for ref in (UNIT_ITEM_REF, CASE_ITEM_REF)
    )
    uris = [  # extension digit 0, serial reference 9 + p
        f"urn:epc:id:sscc:{COMPANY_PREFIX}.09{p:0{17 - len(COMPANY_PREFIX) - 2}d}"
        for p in range(stored // 1000 + 1)
    ]
    pallets = pl.DataFrame(
        {"p": range(len(uris)), "uri": uris, "sscc": [parse_epc(u).sscc for u in uris]}
    )
    con.register("_bench_pallets", pallets.to_arrow())  # type: ignore[attr-defined]
    texts = f"""SELECT i, i // 1000 AS p,
            'urn:epc:id:sgtin:{COMPANY_PREFIX}.{UNIT_ITEM_REF}.' || {serial("i")} AS unit,
            {serial("i")} AS unit_serial,
            'urn:epc:id:sgtin:{COMPANY_PREFIX}.{CASE_ITEM_REF}.' || {serial("i // 20")} AS case_uri,
            {serial("i // 20")} AS case_serial
        FROM range({stored}) t(i)"""
    none = {"epc": "NULL", "product_code": "NULL", "serial": "NULL", "sscc": "NULL"}
    unit_key = epc_key_sql(
        "'sgtin'", **{**none, "product_code": f"'{unit}'", "serial": "unit_serial"}
    )
    case_key = epc_key_sql(
        "'sgtin'", **{**none, "product_code": f"'{case}'", "serial": "case_serial"}
    )
    pallet_key = epc_key_sql("'sscc'", **{**none, "sscc": "b.sscc"})
    con.execute(  # type: ignore[attr-defined]
        f"""INSERT INTO shipping_aggregation (cmo_id, child, child_key, parent_key)
        SELECT 'CMO1', unit, {unit_key}, {case_key} FROM ({texts})
        UNION ALL
        SELECT 'CMO1', case_uri, {case_key}, {pallet_key}
        FROM ({texts}) t JOIN _bench_pallets b USING (p) WHERE i % 20 = 0"""
    )
    con.execute(  # type: ignore[attr-defined]
        f"""INSERT INTO shipping_parents
        SELECT 'CMO1', {case_key}, case_uri FROM ({texts}) WHERE i % 20 = 0
        UNION ALL
        SELECT 'CMO1', {pallet_key}, uri FROM _bench_pallets b"""
    )
    con.unregister("_bench_pallets")  # type: ignore[attr-defined]


def _child_full(doc: Path, sgtins: int, workdir: Path, stored: int = 0) -> dict[str, object]:
    import datetime as dt

    from connectors.epcis import stage_document
    from transforms.context import RunContext
    from transforms.shipping import reconcile_document

    shape = Shape(sgtins)
    db = workdir / f"state-{os.getpid()}.duckdb"
    con = _setup_state(db, shape, stored)
    rss_before = _rss_mb()
    ctx = RunContext("bench", dt.datetime(2024, 5, 1)).for_file(doc.name)
    started, cpu = time.perf_counter(), time.process_time()
    info = stage_document(con, doc)  # type: ignore[arg-type]
    staged, staged_cpu = time.perf_counter(), time.process_time()
    con.execute("BEGIN")  # type: ignore[attr-defined]
    result = reconcile_document(con, info, ctx)  # type: ignore[arg-type]
    con.execute("COMMIT")  # type: ignore[attr-defined]
    done, done_cpu = time.perf_counter(), time.process_time()
    rec = result.reconciliation
    con.close()  # type: ignore[attr-defined]
    for leftover in workdir.glob(f"state-{os.getpid()}.duckdb*"):
        leftover.unlink()
    return {
        "wall_s": done - started,
        "parse_s": staged - started,
        "reconcile_s": done - staged,
        "cpu_s": done_cpu - cpu,
        "parse_cpu_s": staged_cpu - cpu,
        "reconcile_cpu_s": done_cpu - staged_cpu,
        "shipped": rec["shipped"],
        "commissioned": rec["commissioned"],
        "ok": rec["ok"],
        "expected_sgtins": shape.total_sgtins,
        "rss_before_mb": rss_before,
        "peak_mb": _peak_mb(),
    }


def _measure(
    mode: str, doc: Path, sgtins: int, workdir: Path, stored: int = 0
) -> dict[str, object]:
    cmd = [sys.executable, "-m", "bench.bench_epcis", "--child", mode, "--doc", str(doc)]
    cmd += ["--sgtins", str(sgtins), "--workdir", str(workdir), "--stored", str(stored)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="EPCIS shipping benchmark (SPEC §6)")
    parser.add_argument("--sgtins", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3, help="alternating bare/full pairs")
    parser.add_argument("--workdir", type=Path, default=None, help="keep documents here")
    parser.add_argument("--no-double", action="store_true", help="skip the 2x document")
    parser.add_argument(
        "--stored",
        type=int,
        default=0,
        help="also measure against a store holding this many links of earlier documents",
    )
    parser.add_argument(
        "--duckdb-memory",
        default=None,
        help="DuckDB memory_limit of the state store (CMI_DUCKDB_MEMORY; the store's default "
        "otherwise)",
    )
    parser.add_argument(
        "--child",
        choices=["bare", "full", "bare_json", "full_json", "items_json"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--doc", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.duckdb_memory:
        os.environ["CMI_DUCKDB_MEMORY"] = args.duckdb_memory  # inherited by the children
    if args.child:
        if args.child == "bare":
            print(json.dumps(_child_bare(args.doc)))
        elif args.child == "bare_json":
            print(json.dumps(_child_bare_json(args.doc)))
        elif args.child == "items_json":
            print(json.dumps(_child_items_json(args.doc)))
        else:  # full or full_json: the document's name says its syntax
            print(json.dumps(_child_full(args.doc, args.sgtins, args.workdir, args.stored)))
        return

    with tempfile.TemporaryDirectory(prefix="bench_epcis_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        sizes = [args.sgtins] + ([] if args.no_double else [2 * args.sgtins])
        summary: dict[str, list[dict[str, object]]] = {}
        for syntax, (bare_mode, full_mode) in _SYNTAXES.items():
            docs = _documents(workdir, sizes, syntax)
            summary[syntax] = _run_syntax(args, workdir, sizes, docs, bare_mode, full_mode)
        xml, jsonld = summary["xml"][0], summary["jsonld"][0]
        verdict = [
            f"XML ratio {xml['ratio']} (target ≤ {TARGET_RATIO})",
            f"XML peak {xml['full_peak_mb']} MB",
            f"JSON-LD ratio {jsonld['ratio']} (target ≤ {TARGET_JSONLD_RATIO}; floor "
            f"{jsonld['floor_ratio']}: building the events {jsonld['items_s']} s + the shared "
            f"reconciliation {jsonld['reconcile_s']} s)",
            f"JSON-LD peak {jsonld['full_peak_mb']} MB (targets < {TARGET_PEAK_MB} MB)",
        ]
        for syntax in ("xml", "jsonld"):
            if len(summary[syntax]) > 1:
                big, small = summary[syntax][1], summary[syntax][0]
                growth = float(big["full_peak_mb"]) / max(1.0, float(small["full_peak_mb"]))  # type: ignore[arg-type]
                small["memory_growth_2x"] = round(growth, 2)
                verdict.append(
                    f"{syntax} 2x document: ratio {big['ratio']}, {growth:.2f}x the memory"
                )
        print("; ".join(verdict))
        if args.stored:
            xml_doc = workdir / f"shipping_bench_{args.sgtins}.xml"
            full = _measure("full", xml_doc, args.sgtins, workdir, args.stored)
            empty = float(xml["reconcile_s"])  # type: ignore[arg-type]
            xml["stored_links"] = args.stored
            xml["reconcile_stored_s"] = round(float(full["reconcile_s"]), 2)  # type: ignore[arg-type]
            xml["stored_peak_mb"] = round(float(full["peak_mb"]), 0)  # type: ignore[arg-type]
            print(
                f"against {args.stored:,} stored links: reconcile {full['reconcile_s']:.2f} s "
                f"({float(full['reconcile_s']) / max(empty, 1e-9):.2f}x the empty store), "  # type: ignore[arg-type]
                f"peak {full['peak_mb']:.0f} MB"
            )
        memory = os.environ.get("CMI_DUCKDB_MEMORY", "store default")
        line = {
            "bench": "epcis",
            "duckdb_memory": memory,
            "load_avg": os.getloadavg()[0],
            "results": summary["xml"],
            "jsonld_results": summary["jsonld"],
            "xml_ratio": xml["ratio"],
            "xml_peak_mb": xml["full_peak_mb"],
            "jsonld_ratio": jsonld["ratio"],
            "jsonld_peak_mb": jsonld["full_peak_mb"],
            "xml_cpu_ratio": xml["cpu_ratio"],
            "jsonld_cpu_ratio": jsonld["cpu_ratio"],
            "xml_floor_ratio": xml["floor_ratio"],
            "jsonld_floor_ratio": jsonld["floor_ratio"],
        }
        print(json.dumps(line))


_SYNTAXES = {"xml": ("bare", "full"), "jsonld": ("bare_json", "full_json")}
_ITEMS = {"jsonld": "items_json"}  # the parser building every event, nothing else


def _documents(workdir: Path, sizes: list[int], syntax: str) -> dict[int, Path]:
    docs: dict[int, Path] = {}
    for n in sizes:
        path = workdir / f"shipping_bench_{n}.{syntax}"
        if not path.exists():
            (write_document if syntax == "xml" else write_document_jsonld)(path, Shape(n))
        docs[n] = path
    return docs


def _run_syntax(
    args: argparse.Namespace,
    workdir: Path,
    sizes: list[int],
    docs: dict[int, Path],
    bare_mode: str,
    full_mode: str,
) -> list[dict[str, object]]:
    """Alternating bare/full pairs for each size of one syntax; a row per size."""
    results: dict[int, dict[str, list[dict[str, object]]]] = {}
    for n in sizes:
        reps = args.reps if n == args.sgtins else 1
        runs: dict[str, list[dict[str, object]]] = {"bare": [], "full": [], "items": []}
        modes = [(bare_mode, "bare"), (full_mode, "full")]
        if full_mode == "full_json":
            modes.insert(1, (_ITEMS["jsonld"], "items"))
        for _ in range(reps):
            for mode, kind in modes:
                runs[kind].append(_measure(mode, docs[n], n, workdir))
        results[n] = runs
        last = runs["full"][-1]
        if last["shipped"] != last["expected_sgtins"]:
            raise SystemExit(f"wrong result: {last}")
    print(f"{docs[sizes[0]].suffix[1:]:>6} {'SGTINs':>10} {'MB':>7} {'bare s':>8} {'full s':>8} "
          f"{'parse s':>8} {'recon s':>8} {'ratio':>6} {'floor':>6} {'SGTIN/s':>9} {'bare MB':>8} {'full MB':>8}")  # fmt: skip
    rows = []
    for n in sizes:
        runs = results[n]
        bare = statistics.median(float(r["wall_s"]) for r in runs["bare"])  # type: ignore[arg-type]
        full = statistics.median(float(r["wall_s"]) for r in runs["full"])  # type: ignore[arg-type]
        parse = statistics.median(float(r["parse_s"]) for r in runs["full"])  # type: ignore[arg-type]
        recon = statistics.median(float(r["reconcile_s"]) for r in runs["full"])  # type: ignore[arg-type]
        # CPU seconds of the whole process (DuckDB's and Polars' threads too): on a loaded
        # machine they compare two versions of the code where wall times cannot
        cpu = {
            name: statistics.median(float(r[name]) for r in runs["full"])  # type: ignore[arg-type]
            for name in ("cpu_s", "parse_cpu_s", "reconcile_cpu_s")
        }
        bare_cpu = statistics.median(float(r["cpu_s"]) for r in runs["bare"])  # type: ignore[arg-type]
        # the floor (see the module's docstring): the reconciliation both syntaxes share,
        # after the parser alone (JSON-LD: building the events; XML: the bare pass)
        items = (
            statistics.median(float(r["wall_s"]) for r in runs["items"])  # type: ignore[arg-type]
            if runs["items"]
            else bare
        )
        shipped = int(runs["full"][-1]["shipped"])  # type: ignore[call-overload]
        peak_full = max(float(r["peak_mb"]) for r in runs["full"])  # type: ignore[arg-type]
        peak_bare = max(float(r["peak_mb"]) for r in runs["bare"])  # type: ignore[arg-type]
        size_mb = docs[n].stat().st_size / 1e6
        row = {
            "sgtins": shipped, "doc_mb": round(size_mb, 1), "bare_s": round(bare, 2),
            "full_s": round(full, 2), "parse_s": round(parse, 2), "reconcile_s": round(recon, 2),
            "ratio": round(full / bare, 2), "sgtins_per_s": round(shipped / full),
            "bare_cpu_s": round(bare_cpu, 2), "full_cpu_s": round(cpu["cpu_s"], 2),
            "parse_cpu_s": round(cpu["parse_cpu_s"], 2),
            "reconcile_cpu_s": round(cpu["reconcile_cpu_s"], 2),
            "cpu_ratio": round(cpu["cpu_s"] / bare_cpu, 2),
            "items_s": round(items, 2), "reconcile_ratio": round(recon / bare, 2),
            "floor_ratio": round((items + recon) / bare, 2),
            "bare_peak_mb": round(peak_bare), "full_peak_mb": round(peak_full),
            "full_rss_before_mb": round(float(runs["full"][-1]["rss_before_mb"])),  # type: ignore[arg-type]
            "reps": len(runs["full"]),
        }  # fmt: skip
        rows.append(row)
        print(f"{'':>6} {shipped:>10} {size_mb:>7.1f} {bare:>8.2f} {full:>8.2f} {parse:>8.2f} "
              f"{recon:>8.2f} {full / bare:>6.2f} {(items + recon) / bare:>6.2f} {shipped / full:>9.0f} {peak_bare:>8.0f} "
              f"{peak_full:>8.0f}")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
