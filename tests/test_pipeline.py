"""The nightly pipeline end to end, without Prefect: inbox handling, reliability, reports (§3, §8–§10)."""

from __future__ import annotations

import csv as csvlib
import hashlib
import importlib
import io
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from connectors.faults import RunStopped
from connectors.store import StateLocked, _NotInstalled, open_store
from tests.pipeline_helpers import csv, drop, paths_in, report, run_day, summary

P1 = "11223344556675"
P2 = "04034567000018"

MASTER = {
    "products_a.csv": csv(
        "product_code,product_name", f"{P1},Medicine Demo Product", f"{P2},Amoxicillin"
    ),
    "cmos_a.csv": csv(
        "cmo_id,cmo_name,city,country,produceable_products",
        f"ACME,Acme Pharma,Mannheim,DE,{P1};{P2}",
        f"BETA,=Beta Labs,Cork,IE,{P2}",
    ),
    "serial_pool_a.csv": csv("product_code,serial", *[f"{P1},S{i:05d}" for i in range(1, 101)]),
}


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csvlib.DictReader(io.StringIO(text)))


def test_a_day_is_applied_archived_and_reported(tmp_path: Path) -> None:
    files = dict(MASTER)
    files["assignments_a.csv"] = csv("cmo_id,product_code,quantity", f"ACME,{P1},30")
    files["exports_a.csv"] = csv("cmo_id,product_code,quantity", f"ACME,{P1},20")
    out = run_day(tmp_path, "2026-11-23T02:00:00", files)
    assert out["run_id"] == "20261123T020000"
    archived = sorted(
        p.name for p in (tmp_path / "inbox" / "archive" / "20261123T020000").iterdir()
    )
    assert archived == sorted(files)
    export = tmp_path / "outbox" / "serials" / "ACME" / f"{P1}_Acme-Pharma_20_20261123020000.csv"
    lines = export.read_text().splitlines()
    assert lines[0] == "product_code,serial" and lines[1] == f"{P1},S00001" and len(lines) == 21
    balance = {
        r["product_code"]: r
        for r in rows_of(report(tmp_path, out["run_id"], "serial_balance.csv"))
        if r["cmo_id"] == "ACME"
    }
    assert balance[P1]["available"] == "70" and balance[P1]["assigned"] == "30"
    assert balance[P1]["exported"] == "20" and balance[P1]["assigned_not_exported"] == "10"
    assert (tmp_path / "outbox" / "reports" / "LATEST").read_text().strip() == out["run_id"]
    s = summary(tmp_path, out["run_id"])
    assert s["totals"]["files_applied"] == len(files)
    assert all(s["invariants"].values())


def test_same_file_content_is_never_applied_twice(tmp_path: Path) -> None:
    run_day(tmp_path, "2026-11-23T02:00:00", dict(MASTER))
    again = {"serial_pool_copy.csv": MASTER["serial_pool_a.csv"]}
    out = run_day(tmp_path, "2026-11-24T02:00:00", again)
    s = summary(tmp_path, out["run_id"])
    assert [f["outcome"] for f in s["files"]] == ["duplicate"]
    assert any("20261123T020000" in w for w in s["warnings"])
    assert (tmp_path / "inbox" / "archive" / out["run_id"] / "serial_pool_copy.csv").exists()
    rejects = report(tmp_path, out["run_id"], "rejects.csv")
    assert rejects == "file,line,column,value,rule,message\n"


def test_a_pool_file_of_hundreds_of_products_is_loaded_onto_a_store_that_has_them(
    tmp_path: Path,
) -> None:
    """The second pool file of 300 products: its existing serials are rejected and the
    night's invariants checked in bounded memory (one statement of a scan per product
    ran out of DuckDB's memory at 200 products: the night stopped, exit 1, every night)."""
    from transforms.codes import gs1_check_digit

    codes = [(b := f"09{i:011d}") + gs1_check_digit(b) for i in range(300)]
    first = {
        "products_a.csv": csv("product_code,product_name", *(f"{c},Product {c}" for c in codes)),
        "serial_pool_a.csv": csv(
            "product_code,serial", *(f"{c},{n}" for c in codes for n in range(1, 21))
        ),
    }
    run_day(tmp_path, "2026-11-23T02:00:00", first)
    second = {
        "serial_pool_b.csv": csv(
            "product_code,serial", *(f"{c},{n}" for c in codes for n in range(20, 41))
        )
    }
    out = run_day(tmp_path, "2026-11-24T02:00:00", second)
    s = summary(tmp_path, out["run_id"])
    assert s["totals"]["rows_applied"] == 300 * 20 and s["totals"]["rows_rejected"] == 300
    rejects = rows_of(report(tmp_path, out["run_id"], "rejects.csv"))
    assert {(r["value"], r["rule"]) for r in rejects} == {("20", "serial_exists")}
    assert s["invariants"] and all(s["invariants"].values())


def test_empty_inbox_changes_nothing_and_reports_have_headers(tmp_path: Path) -> None:
    first = run_day(tmp_path, "2026-11-23T02:00:00", dict(MASTER))
    second = run_day(tmp_path, "2026-11-24T02:00:00")
    assert report(tmp_path, first["run_id"], "serial_balance.csv") == report(
        tmp_path, second["run_id"], "serial_balance.csv"
    )
    assert report(tmp_path, second["run_id"], "exported_files.csv").splitlines() == [
        "cmo_id,file_name,product_code,count,created,can_contain_duplicates"
    ]


def test_the_reason_of_an_unrecognised_file_names_the_extensions_of_every_kind(
    tmp_path: Path,
) -> None:
    """§3: the reason starts `unrecognised file kind` and tells the fix: the extensions the
    kinds take, shipping's .xml, .json and .jsonld included (it named .csv and .xml)."""
    out = run_day(tmp_path, "2026-11-23T02:00:00", {"shipping_a.txt": "hello"})
    q = tmp_path / "inbox" / "quarantine" / out["run_id"]
    reason = (q / "shipping_a.txt.reason.txt").read_text()
    assert reason.startswith("unrecognised file kind")
    assert all(ext in reason for ext in (".csv", ".xml", ".json", ".jsonld")), reason


def test_unknown_column_quarantines_the_file_with_a_reason(tmp_path: Path) -> None:
    files = {
        "products_a.csv": csv("product_code,product_name,stok_unit", f"{P1},Demo,EA"),
        "notes.txt": "hello",
    }
    out = run_day(tmp_path, "2026-11-23T02:00:00", files)
    q = tmp_path / "inbox" / "quarantine" / out["run_id"]
    assert "stok_unit" in (q / "products_a.csv.reason.txt").read_text()
    assert "unrecognised file kind" in (q / "notes.txt.reason.txt").read_text()
    s = summary(tmp_path, out["run_id"])
    assert s["totals"]["files_quarantined"] == 2
    # every file whose bytes could be read has its SHA-256, an unrecognised one too (§10)
    sha = {f["name"]: f["sha256"] for f in s["files"]}
    assert sha["notes.txt"] == hashlib.sha256(b"hello").hexdigest()
    assert sha["products_a.csv"] == hashlib.sha256(files["products_a.csv"].encode()).hexdigest()


def test_bad_rows_are_rejected_and_good_rows_of_the_same_file_applied(tmp_path: Path) -> None:
    files = dict(MASTER)
    files["assignments_a.csv"] = csv(
        "cmo_id,product_code,quantity",
        f"ACME,{P1},10",
        f"NOPE,{P1},5",
        f"ACME,{P1},abc",
        f"ACME,{P1},500",
    )
    out = run_day(tmp_path, "2026-11-23T02:00:00", files)
    rejects = rows_of(report(tmp_path, out["run_id"], "rejects.csv"))
    got = [(r["file"], r["line"], r["column"], r["rule"]) for r in rejects]
    assert got == [
        ("assignments_a.csv", "3", "cmo_id", "unknown_cmo"),
        ("assignments_a.csv", "4", "quantity", "quantity"),
        ("assignments_a.csv", "5", "quantity", "not_enough_available"),
    ]
    assert "only 90 are available" in rejects[-1]["message"]
    s = summary(tmp_path, out["run_id"])
    f = next(f for f in s["files"] if f["name"] == "assignments_a.csv")
    assert (f["rows_read"], f["rows_applied"], f["rows_rejected"]) == (4, 1, 3)


def test_free_text_cells_are_formula_safe_in_reports(tmp_path: Path) -> None:
    files = dict(MASTER)
    files["assignments_a.csv"] = csv("cmo_id,product_code,quantity", f"+ACME,{P1},1")
    out = run_day(tmp_path, "2026-11-23T02:00:00", files)
    cmos = rows_of(report(tmp_path, out["run_id"], "cmos.csv"))
    assert next(r for r in cmos if r["cmo_id"] == "BETA")["cmo_name"] == "'=Beta Labs"
    balance = rows_of(report(tmp_path, out["run_id"], "serial_balance.csv"))
    assert next(r for r in balance if r["cmo_id"] == "BETA")["cmo_name"] == "'=Beta Labs"
    (reject,) = rows_of(report(tmp_path, out["run_id"], "rejects.csv"))
    assert reject["value"] == "'+ACME"  # what the user typed, made safe


def test_a_row_with_an_unquoted_comma_is_rejected_and_the_others_are_applied(
    tmp_path: Path,
) -> None:
    files = dict(MASTER)
    files["cmos_b.csv"] = csv(
        "cmo_id,cmo_name,city,country",
        "GAMMA,Gamma Labs,Bonn,DE",
        "DELTA,Delta, Inc.,Austin,US",
        "EPS,Eps,Lyon,FR",
    )
    out = run_day(tmp_path, "2026-11-23T02:00:00", files)
    s = summary(tmp_path, out["run_id"])
    f = next(f for f in s["files"] if f["name"] == "cmos_b.csv")
    assert (f["outcome"], f["rows_read"], f["rows_applied"], f["rows_rejected"]) == (
        "applied", 3, 2, 1,
    )  # fmt: skip
    (reject,) = rows_of(report(tmp_path, out["run_id"], "rejects.csv"))
    assert (reject["file"], reject["line"], reject["rule"]) == ("cmos_b.csv", "3", "cell_count")
    cmos = {r["cmo_id"] for r in rows_of(report(tmp_path, out["run_id"], "cmos.csv"))}
    assert {"GAMMA", "EPS"} <= cmos and "DELTA" not in cmos


def test_two_order_files_with_the_same_content_in_one_run_apply_once(tmp_path: Path) -> None:
    """Order files are applied together (§7.5); a second file with the content of the
    first is a duplicate (§8) and the run's other order files are applied."""
    files = dict(MASTER)
    head = "order_no,order_line,order_date,customer,item,quantity"
    files["orders_a.csv"] = csv(head, f"SO1,1,2026-11-22,CUST1,{P1},2")
    files["orders_b.csv"] = files["orders_a.csv"]
    files["orders_c.csv"] = csv(head, f"SO2,1,2026-11-22,CUST1,{P1},3")
    out = run_day(tmp_path, "2026-11-23T02:00:00", files)
    s = summary(tmp_path, out["run_id"])
    outcome = {f["name"]: f["outcome"] for f in s["files"] if f["name"].startswith("orders_")}
    assert outcome == {"orders_a.csv": "applied", "orders_b.csv": "duplicate",
                       "orders_c.csv": "applied"}  # fmt: skip
    assert any("orders_b.csv" in w and "orders_a.csv" in w for w in s["warnings"])
    assert (tmp_path / "inbox" / "archive" / out["run_id"] / "orders_b.csv").exists()
    allocations = rows_of(report(tmp_path, out["run_id"], "allocations.csv"))
    assert [r["order_no"] for r in allocations] == ["SO1", "SO2"]


def test_a_semicolon_file_is_applied_with_a_warning(tmp_path: Path) -> None:
    files = dict(MASTER)
    files["assignments_a.csv"] = f"cmo_id;product_code;quantity\nACME;{P1};3\n"
    out = run_day(tmp_path, "2026-11-23T02:00:00", files)
    s = summary(tmp_path, out["run_id"])
    f = next(f for f in s["files"] if f["name"] == "assignments_a.csv")
    assert (f["outcome"], f["rows_applied"]) == ("applied", 1)
    assert any("assignments_a.csv" in w and "semicolon" in w for w in s["warnings"])


def test_an_export_that_cannot_be_written_stops_the_run_and_is_written_later(
    tmp_path: Path,
) -> None:
    """An outbox folder that cannot be written stops the run (§8 stop, don't cascade): the
    file whose export it is was committed (the export stays recorded), the files after it
    stay in the inbox; a night with the folder still blocked stops before any file; once
    it is free, the next run writes the export, then applies the waiting files."""
    files = dict(MASTER)
    files["assignments_a.csv"] = csv("cmo_id,product_code,quantity", f"ACME,{P1},5")
    files["exports_a.csv"] = csv("cmo_id,product_code,quantity", f"ACME,{P1},2", f"ACME,{P1},99")
    blocker = tmp_path / "outbox" / "serials" / "ACME"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    with pytest.raises(RunStopped, match="the outbox .* could not be read or written"):
        run_day(tmp_path, "2026-11-23T02:00:00", files)
    assert (tmp_path / "inbox" / "archive" / "20261123T020000" / "exports_a.csv").exists()
    assert not (tmp_path / "inbox" / "quarantine").exists()
    # still blocked: the next night stops before it touches a file
    with pytest.raises(RunStopped, match="no file was touched"):
        run_day(tmp_path, "2026-11-24T01:00:00", {"products_b.csv": csv(
            "product_code,product_name", f"{P2},Amoxicillin 500")})  # fmt: skip
    assert (tmp_path / "inbox" / "products_b.csv").exists()
    blocker.unlink()
    later = run_day(tmp_path, "2026-11-24T02:00:00")
    (export,) = blocker.iterdir()
    assert len(export.read_text().splitlines()) == 3  # header + the 2 serials
    s = summary(tmp_path, later["run_id"])
    assert [f["outcome"] for f in s["files"] if f["name"] == "products_b.csv"] == ["applied"]
    assert any("written now" in w for w in s["warnings"])
    # the stopped run wrote no reports: its rows are in this run's (§8 no report row lost)
    rejects = rows_of(report(tmp_path, later["run_id"], "rejects.csv"))
    assert [(r["file"], r["line"]) for r in rejects] == [("exports_a.csv", "3")]
    balance = rows_of(report(tmp_path, later["run_id"], "serial_balance.csv"))
    assert (
        next(r for r in balance if r["cmo_id"] == "ACME" and r["product_code"] == P1)["exported"]
        == "2"
    )


def test_files_that_are_not_settled_wait_for_the_next_run(tmp_path: Path) -> None:
    paths = paths_in(tmp_path)
    drop(paths.inbox, {"products_a.csv": MASTER["products_a.csv"]}, age=0)
    drop(paths.inbox, {".hidden.csv": "x", "products_b.csv.part": "x"})
    from transforms.context import Config, InboxConfig

    out = run_day(
        tmp_path, "2026-11-23T02:00:00", config=Config(inbox=InboxConfig(settle_seconds=3600))
    )
    assert (paths.inbox / "products_a.csv").exists() and (paths.inbox / ".hidden.csv").exists()
    s = summary(tmp_path, out["run_id"])
    assert {f["name"]: f["outcome"] for f in s["files"]}["products_a.csv"] == "deferred"
    deferred = {f["name"]: f["sha256"] for f in s["files"]}
    assert (
        deferred["products_a.csv"]
        == hashlib.sha256(b"".join([MASTER["products_a.csv"].encode()])).hexdigest()
    )
    assert deferred["products_b.csv.part"] == hashlib.sha256(b"x").hexdigest()


def test_run_id_gets_a_suffix_when_taken(tmp_path: Path) -> None:
    a = run_day(tmp_path, "2026-11-23T02:00:00")
    b = run_day(tmp_path, "2026-11-23T02:00:00")
    assert (a["run_id"], b["run_id"]) == ("20261123T020000", "20261123T020000-2")


def test_a_module_known_to_be_absent_fails_to_import_at_once_with_the_usual_error() -> None:
    finder = _NotInstalled(frozenset({"cmi_absent_module"}))
    sys.meta_path.insert(0, finder)
    try:
        with pytest.raises(ModuleNotFoundError, match="No module named 'cmi_absent_module'"):
            importlib.import_module("cmi_absent_module")
        assert finder.find_spec("polars") is None  # any other module is looked up as usual
    finally:
        sys.meta_path.remove(finder)


def test_a_second_run_on_a_locked_store_is_refused(tmp_path: Path) -> None:
    paths = paths_in(tmp_path)
    store = open_store(paths.state)
    try:
        with pytest.raises(StateLocked):
            run_day(tmp_path, "2026-11-23T02:00:00")
    finally:
        store.close()


def test_same_inputs_and_as_of_give_byte_identical_outputs(tmp_path: Path) -> None:
    files = dict(MASTER)
    files["assignments_a.csv"] = csv(
        "cmo_id,product_code,quantity", f"ACME,{P1},40", f"BETA,{P2},1"
    )
    files["exports_a.csv"] = csv("cmo_id,product_code,quantity", f"ACME,{P1},15")
    a, b = tmp_path / "a", tmp_path / "b"
    run_day(a, "2026-11-23T02:00:00", files)
    run_day(b, "2026-11-23T02:00:00", files)
    for name in ("rejects.csv", "cmos.csv", "serial_balance.csv", "exported_files.csv"):
        assert report(a, "20261123T020000", name) == report(b, "20261123T020000", name)
    ea = sorted(p.relative_to(a) for p in (a / "outbox" / "serials").rglob("*.csv"))
    eb = sorted(p.relative_to(b) for p in (b / "outbox" / "serials").rglob("*.csv"))
    assert ea == eb and all((a / p).read_bytes() == (b / p).read_bytes() for p in ea)
    shutil.rmtree(a)


def test_a_file_name_that_is_not_utf8_is_quarantined_under_a_safe_name(tmp_path: Path) -> None:
    """Issue 18 item 4 (§8 bounded input): `products_\\xff.csv` is quarantined as
    `products_%FF.csv` with its bytes shown escaped in the reason; the other files are
    applied and run_summary.json is written; a temporary file with such a name waits."""
    paths = paths_in(tmp_path)
    drop(paths.inbox, dict(MASTER))
    raw_inbox = os.fsencode(paths.inbox)
    for raw in (b"products_\xff.csv", b"notes_\xe9t\xe9.txt", b"cmos_b.csv\xff.part"):
        with open(os.path.join(raw_inbox, raw), "wb") as fh:
            fh.write(f"product_code,product_name\n{P2},Amoxicillin\n".encode())
        past = time.time() - 60
        os.utime(os.path.join(raw_inbox, raw), (past, past))
    out = run_day(tmp_path, "2026-11-23T02:00:00")
    s = summary(tmp_path, out["run_id"])
    outcome = {f["name"]: (f["outcome"], f["reason"]) for f in s["files"]}
    assert outcome["products_\\xff.csv"][0] == "quarantined"
    assert "products_\\xff.csv" in outcome["products_\\xff.csv"][1]
    assert "quarantined as products_%FF.csv" in outcome["products_\\xff.csv"][1]
    assert outcome["notes_\\xe9t\\xe9.txt"][0] == "quarantined"
    assert outcome["cmos_b.csv\\xff.part"][0] == "deferred"
    assert all(outcome[name][0] == "applied" for name in MASTER)
    q = tmp_path / "inbox" / "quarantine" / out["run_id"]
    assert sorted(p.name for p in q.iterdir()) == [
        "notes_%E9t%E9.txt", "notes_%E9t%E9.txt.reason.txt",
        "products_%FF.csv", "products_%FF.csv.reason.txt",
    ]  # fmt: skip
    assert "\\xff" in (q / "products_%FF.csv.reason.txt").read_text(encoding="utf-8")
    assert os.path.exists(os.path.join(raw_inbox, b"cmos_b.csv\xff.part"))


def test_every_text_cell_of_every_report_is_formula_safe_and_exports_are_not_touched(
    tmp_path: Path,
) -> None:
    """§10 (issue 18 item 8): partners' codes starting like a formula — an order number, a
    customer, a lot, a malformed EPC — get the leading `'` in every report CSV, like free
    text; the export files and answers keep their serials as issued."""
    import datetime as dt

    from connectors.demo import demo_files

    files: dict[str, str | bytes] = dict(demo_files(dt.date(2026, 11, 23)))
    ship = next(n for n in files if n.startswith("shipping_"))
    files[ship] = (
        str(files[ship])
        .replace("LOT-2026-11-A", "=HYPERLINK(1)")
        .replace("NOTOURS0001</epc>", "NOTOURS0001</epc><epc>@SUM(1)</epc>")
    )
    files["orders_demo_morning.csv"] = (
        str(files["orders_demo_morning.csv"])
        .replace("SO-261123-0002,", "=SO-261123-0002,")
        .replace("HOSP-NORTH", "+HOSP-NORTH")
    )
    out = run_day(tmp_path, "2026-11-23T02:00:00", files)
    folder = tmp_path / "outbox" / "reports" / out["run_id"]
    allocations = rows_of(report(tmp_path, out["run_id"], "allocations.csv"))
    assert any(r["order_no"] == "'=SO-261123-0002" for r in allocations)
    assert any(r["customer"] == "'+HOSP-NORTH" for r in allocations)
    lots = rows_of(report(tmp_path, out["run_id"], "lot_reconciliation.csv"))
    assert [r["lot"] for r in lots] == ["'=HYPERLINK(1)"]
    exceptions = rows_of(report(tmp_path, out["run_id"], "shipping_exceptions.csv"))
    assert any(r["epc"] == "'@SUM(1)" for r in exceptions)
    for path in folder.glob("*.csv"):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csvlib.reader(fh):
                risky = [c for c in row if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
                assert all(c.lstrip("-").isdigit() for c in risky), (path.name, risky)
    machines = [*(tmp_path / "outbox").glob("serials/*/*.csv"),
                *(tmp_path / "outbox").glob("partners/*/*.csv")]  # fmt: skip
    assert machines and all("'" not in p.read_text() for p in machines)
