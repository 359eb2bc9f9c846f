"""`cmi validate` (SPEC §1): the run's judgement of the inbox against the current state,
changing nothing — not the state store's bytes (nor its WAL), not the inbox."""

from __future__ import annotations

import csv as csvlib
import datetime as dt
import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from connectors.config import parse_config
from connectors.demo import demo_files
from connectors.inbox import kind_of
from connectors.state_view import open_state_view
from connectors.store import open_store
from flows import validate as validate_flow
from flows.cli import app
from flows.pipeline import _holder_note, run_local
from flows.validate import validate_inbox
from tests.pipeline_helpers import SETTLED, csv, drop, paths_in
from transforms.context import Config

runner = CliRunner()
CASES = Path(__file__).parent / "cases"
CASE_DIRS = sorted(p for p in CASES.iterdir() if (p / "inbox").is_dir())
DAY = dt.datetime(2026, 11, 23, 2, 0, 0)
P1 = "11223344556675"


def fingerprint(*folders: Path) -> dict[str, str]:
    """Every file under the folders (relative name -> SHA-256): what must not change."""
    out = {}
    for folder in folders:
        if not folder.exists():
            continue
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                out[str(p.relative_to(folder.parent))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _order(name: str) -> tuple[int, str]:
    from connectors.inbox import KIND_ORDER

    return (KIND_ORDER.get(kind_of(name) or "", 99), name)


def _case(case: Path) -> tuple[Config, dt.datetime, dict[str, bytes]]:
    spec = tomllib.loads((case / "case.toml").read_text()) if (case / "case.toml").exists() else {}
    as_of = dt.datetime.fromisoformat(spec.pop("as_of", "2026-11-23T02:00:00"))
    spec.setdefault("inbox", {})["settle_seconds"] = 0
    files = {p.name: p.read_bytes() for p in (case / "inbox").iterdir() if p.is_file()}
    return parse_config(spec, str(case / "case.toml")), as_of, files


def _rejects(path: Path) -> list[dict[str, str]]:
    return list(csvlib.DictReader(path.open(encoding="utf-8")))


def _outcomes(summary: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (f["name"], f["outcome"].replace("would_apply", "applied"), f["sha256"], f["rows_read"],
         f["rows_applied"], f["rows_rejected"])
        for f in summary["files"]
    ]  # fmt: skip


def _judge_then_run(
    root: Path, config: Config, as_of: dt.datetime, files: dict[str, bytes]
) -> tuple[Path, Path]:
    """Validate the files against the state in `root`, check that nothing changed, then run
    them; return (validate's report folder, the run's report folder)."""
    paths = paths_in(root)
    drop(paths.inbox, files)  # type: ignore[arg-type]
    before = fingerprint(paths.inbox, paths.state.parent)
    found = validate_inbox(paths.inbox, paths.state, config, as_of, root / "validate")
    assert found.unexpected == []
    assert fingerprint(paths.inbox, paths.state.parent) == before
    paths.outbox.mkdir(parents=True, exist_ok=True)
    outline = run_local(paths, config, as_of)
    return found.report_dir, paths.outbox / "reports" / outline["run_id"]


@pytest.mark.parametrize("case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_validate_rejects_what_the_run_rejects_in_every_golden_case(
    case: Path, tmp_path: Path
) -> None:
    """Day 1 runs the first half of the case's files (in processing order); day 2 is
    validated against the state day 1 left, then run: the same rejects and outcomes."""
    config, as_of, files = _case(case)
    names = sorted(files, key=_order)
    first, rest = names[: len(names) // 2], names[len(names) // 2 :]
    paths = paths_in(tmp_path)
    if first:
        drop(paths.inbox, {n: files[n] for n in first})  # type: ignore[misc]
        paths.outbox.mkdir(parents=True, exist_ok=True)
        run_local(paths, config, as_of - dt.timedelta(days=1))
    judged, ran = _judge_then_run(tmp_path, config, as_of, {n: files[n] for n in rest})
    assert (judged / "rejects.csv").read_text() == (ran / "rejects.csv").read_text()
    got = json.loads((judged / "run_summary.json").read_text())
    want = json.loads((ran / "run_summary.json").read_text())
    assert _outcomes(got) == _outcomes(want)
    assert {f["outcome"] for f in got["files"]} <= {"would_apply", "quarantined", "duplicate"}
    assert sorted(p.name for p in judged.iterdir()) == ["rejects.csv", "run_summary.json"]


def test_validate_judges_a_whole_demo_day_as_the_run_does(tmp_path: Path) -> None:
    """Every file kind (shipping, orders, exports included), against an empty state that is
    never created, then the demo day once more against the state the run left."""
    files = {n: t.encode() for n, t in demo_files(DAY.date()).items()}
    judged, ran = _judge_then_run(tmp_path, SETTLED, DAY, files)
    assert (judged / "rejects.csv").read_text() == (ran / "rejects.csv").read_text()
    rejects = _rejects(judged / "rejects.csv")
    assert {r["file"] for r in rejects} >= {"orders_demo_evening.csv", "exports_2026.csv"}
    got = json.loads((judged / "run_summary.json").read_text())
    assert _outcomes(got) == _outcomes(json.loads((ran / "run_summary.json").read_text()))
    assert got["invariants"] and all(got["invariants"].values())
    # the same files again, now against the state the run left: duplicates, as a run says
    # (and the file with a misspelt column is quarantined again)
    again, ran_again = _judge_then_run(tmp_path, SETTLED, DAY + dt.timedelta(days=1), files)
    summary = json.loads((again / "run_summary.json").read_text())
    assert {f["outcome"] for f in summary["files"]} == {"duplicate", "quarantined"}
    assert _outcomes(summary) == _outcomes(json.loads((ran_again / "run_summary.json").read_text()))


def test_each_file_sees_the_effects_of_the_files_before_it(tmp_path: Path) -> None:
    files = {
        "products_a.csv": csv("product_code,product_name", f"{P1},Demo"),
        "cmos_a.csv": csv("cmo_id,cmo_name,city,country,produceable_products", f"C1,One,Basel,CH,{P1}"),
        "serial_pool_a.csv": csv("product_code,serial", f"{P1},A1", f"{P1},A2"),
        "assignments_a.csv": csv("cmo_id,product_code,quantity", f"C1,{P1},2", f"C1,{P1},1"),
    }  # fmt: skip
    drop(tmp_path / "inbox", files)  # type: ignore[arg-type]
    found = validate_inbox(tmp_path / "inbox", tmp_path / "st" / "cmi.duckdb", SETTLED, DAY, None)
    rejects = _rejects(found.report_dir / "rejects.csv")
    # the second assignment finds the two serials taken by the first
    assert [(r["file"], r["line"], r["rule"]) for r in rejects] == [
        ("assignments_a.csv", "3", "not_enough_available")
    ]
    assert not (tmp_path / "st").exists()
    assert found.report_dir.parent == Path(__import__("tempfile").gettempdir())


def _cli(root: Path, *extra: str) -> Any:
    return runner.invoke(
        app,
        ["validate", "--inbox", str(root / "inbox"), "--state", str(root / "state" / "cmi.duckdb"),
         "--as-of", "2026-11-23T02:00:00", *extra],
    )  # fmt: skip


def test_exit_0_when_nothing_would_be_rejected_and_4_when_something_would(tmp_path: Path) -> None:
    (tmp_path / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")
    cfg = ("--config", str(tmp_path / "cmi.toml"))
    drop(tmp_path / "inbox", {"products_a.csv": csv("product_code,product_name", f"{P1},Demo")})
    good = _cli(tmp_path, *cfg, "--report", str(tmp_path / "r1"))
    assert good.exit_code == 0, good.output
    assert f"report: {tmp_path / 'r1'}" in good.output
    summary = json.loads((tmp_path / "r1" / "run_summary.json").read_text())
    assert [f["outcome"] for f in summary["files"]] == ["would_apply"]
    drop(tmp_path / "inbox", {"products_b.csv": csv("product_code,product_name", "123,Bad")})
    bad = _cli(tmp_path, *cfg, "--report", str(tmp_path / "r2"))
    assert bad.exit_code == 4, bad.output
    assert [r["file"] for r in _rejects(tmp_path / "r2" / "rejects.csv")] == ["products_b.csv"]
    (tmp_path / "inbox" / "products_b.csv").unlink()
    drop(tmp_path / "inbox", {"notes.txt": "hello"})  # a file rejected whole
    whole = _cli(tmp_path, *cfg, "--report", str(tmp_path / "r3"))
    assert whole.exit_code == 4, whole.output
    assert (tmp_path / "inbox" / "notes.txt").exists()
    assert not (tmp_path / "inbox" / "quarantine").exists()


def test_without_report_the_folder_is_new_and_printed(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    result = _cli(tmp_path)
    assert result.exit_code == 0, result.output
    folder = Path(result.output.split("report: ")[1].splitlines()[0])
    assert folder.is_dir() and (folder / "rejects.csv").read_text().startswith("file,line,")


def test_a_report_path_that_is_a_file_is_exit_2_naming_it(tmp_path: Path) -> None:
    """§1: a usage error is exit 2 with a line that says what to fix; the file is left."""
    (tmp_path / "inbox").mkdir()
    taken = tmp_path / "notes.txt"
    taken.write_text("not a folder")
    result = _cli(tmp_path, "--report", str(taken))
    assert result.exit_code == 2, result.output
    assert f"--report {taken} is a file, not a folder" in result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) <= 2
    assert taken.read_text() == "not a folder"


def test_a_missing_inbox_is_exit_2(tmp_path: Path) -> None:
    result = _cli(tmp_path)
    assert result.exit_code == 2 and "inbox" in result.output and "does not exist" in result.output


def test_during_a_run_validate_is_exit_3_naming_the_latest_report_folder(tmp_path: Path) -> None:
    paths = paths_in(tmp_path)
    drop(paths.inbox, {"products_a.csv": csv("product_code,product_name", f"{P1},Demo")})
    paths.outbox.mkdir()
    first = run_local(paths, SETTLED, DAY)
    store = open_store(paths.state)
    try:
        store.note_holder(_holder_note(paths, "20261124T020000"))
        result = _cli(tmp_path)
    finally:
        store.close()
    assert result.exit_code == 3, result.output
    assert str((paths.outbox / "reports" / first["run_id"]).resolve()) in result.output


def test_a_run_cannot_start_while_validate_reads_the_store(tmp_path: Path) -> None:
    paths = paths_in(tmp_path)
    paths.inbox.mkdir()
    paths.outbox.mkdir()
    run_local(paths, SETTLED, DAY)
    store, _ = open_state_view(paths.state)
    try:
        from connectors.store import StateLocked

        with pytest.raises(StateLocked, match="cmi validate or cmi status"):
            run_local(paths, SETTLED, DAY)
    finally:
        store.close()


def test_a_state_store_with_a_write_ahead_log_is_left_byte_for_byte(tmp_path: Path) -> None:
    """A run killed before its checkpoint leaves a WAL; validate reads it and changes neither."""
    paths = paths_in(tmp_path)
    drop(paths.inbox, {"products_a.csv": csv("product_code,product_name", f"{P1},Demo")})
    paths.outbox.mkdir()
    run_local(paths, SETTLED, DAY)
    code = (
        "import duckdb, os; c = duckdb.connect(os.environ['S']); "
        "c.execute(\"SET checkpoint_threshold = '1TB'\"); "
        "c.execute(\"UPDATE products SET product_name = 'Renamed'\"); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], env={"S": str(paths.state)}, check=True)
    assert paths.state.with_name("cmi.duckdb.wal").exists()
    before = fingerprint(paths.state.parent)
    drop(paths.inbox, {"cmos_a.csv": csv("cmo_id,cmo_name,city,country,produceable_products",
                                         f"C1,One,Basel,CH,{P1}")})  # fmt: skip
    found = validate_inbox(paths.inbox, paths.state, SETTLED, DAY, tmp_path / "v")
    assert fingerprint(paths.state.parent) == before
    assert found.rows_rejected == 0 and found.files[0]["outcome"] == "would_apply"
    store, _ = open_state_view(paths.state)
    try:  # what the WAL holds is seen
        assert store.con.execute("SELECT product_name FROM products").fetchall() == [("Renamed",)]
    finally:
        store.close()


def test_only_the_tables_a_kind_writes_are_copied_and_the_others_stay_views(
    tmp_path: Path,
) -> None:
    paths = paths_in(tmp_path)
    drop(paths.inbox, {n: t for n, t in demo_files(DAY.date()).items()})
    paths.outbox.mkdir()
    run_local(paths, SETTLED, DAY)
    drop(paths.inbox, {"products_b.csv": csv("product_code,product_name", f"{P1},Renamed")})
    found = validate_inbox(paths.inbox, paths.state, SETTLED, DAY, tmp_path / "v")
    assert sorted(found.materialised) == ["meta", "processed_files", "products", "report_rows"]


def test_a_pool_file_is_judged_without_copying_the_stored_pool(tmp_path: Path) -> None:
    """The pool is only appended to: the overlay holds the file's serials, and the rules
    see the store's and them (a year-five pool is 100M serials: copying it took most of
    validate's minute on such a store).  A stored serial is still found, a serial of the
    file is seen by the files after it, and the store stays as it was."""
    paths = paths_in(tmp_path)
    first = {
        "products_a.csv": csv("product_code,product_name", f"{P1},Demo"),
        "cmos_a.csv": csv("cmo_id,cmo_name,city,country,produceable_products", f"C1,One,Basel,CH,{P1}"),
        "serial_pool_a.csv": csv("product_code,serial", f"{P1},A1", f"{P1},7"),
    }  # fmt: skip
    drop(paths.inbox, first)  # type: ignore[arg-type]
    paths.outbox.mkdir()
    run_local(paths, SETTLED, DAY)
    drop(paths.inbox, {
        "serial_pool_b.csv": csv("product_code,serial", f"{P1},A1", f"{P1},7", f"{P1},B1", f"{P1},8"),
        "assignments_b.csv": csv("cmo_id,product_code,quantity", f"C1,{P1},4", f"C1,{P1},1"),
    })  # fmt: skip
    before = fingerprint(paths.state.parent)
    store, view = open_state_view(paths.state)
    try:
        view.materialise(["pool"])
        con = store.con
        assert con.execute("SELECT count(*) FROM pool_added").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM pool").fetchone() == (2,)
    finally:
        store.close()
    found = validate_inbox(paths.inbox, paths.state, SETTLED, DAY, tmp_path / "v")
    rejects = [
        (r["file"], r["line"], r["rule"]) for r in _rejects(found.report_dir / "rejects.csv")
    ]
    # the stored serials are found; the file's two new ones and the two stored are
    # assigned by the first row, so the second finds none left
    assert rejects == [
        ("serial_pool_b.csv", "2", "serial_exists"),
        ("serial_pool_b.csv", "3", "serial_exists"),
        ("assignments_b.csv", "3", "not_enough_available"),
    ]
    assert "pool" in found.materialised
    assert fingerprint(paths.state.parent) == before


def test_a_kind_writing_a_table_it_did_not_declare_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The overlay never writes the store and never judges silently wrong: a rule writing a
    table that `WRITES` does not list meets a view and the file is an unexpected error."""
    paths = paths_in(tmp_path)
    drop(paths.inbox, {n: t for n, t in demo_files(DAY.date()).items()})
    paths.outbox.mkdir()
    run_local(paths, SETTLED, DAY)
    drop(paths.inbox, {"assignments_b.csv": csv("cmo_id,product_code,quantity", f"ACME-01,{P1},5")})
    monkeypatch.setitem(validate_flow.WRITES, "assignments", ())
    found = validate_inbox(paths.inbox, paths.state, SETTLED, DAY, tmp_path / "v")
    assert len(found.unexpected) == 1 and "assignments_b.csv" in found.unexpected[0]
    assert (paths.inbox / "assignments_b.csv").exists()


def test_a_store_of_an_earlier_version_is_brought_up_to_date_in_the_overlay(
    tmp_path: Path,
) -> None:
    """A store whose hierarchy kept each parent's text on its link rows (before
    `shipping_parents`) is migrated in memory, as a run would, and left as it was."""
    paths = paths_in(tmp_path)
    paths.inbox.mkdir()
    paths.outbox.mkdir()
    run_local(paths, SETTLED, DAY)
    import duckdb

    con = duckdb.connect(str(paths.state))
    con.execute("DROP VIEW shipping_hierarchy")
    con.execute("ALTER TABLE shipping_aggregation DROP COLUMN child_key")
    con.execute("ALTER TABLE shipping_aggregation ADD COLUMN parent VARCHAR")
    con.execute(
        "INSERT INTO shipping_aggregation (cmo_id, child, parent_key, parent) VALUES "
        "('A', 'urn:epc:id:sgtin:1234567.011111.1', NULL, 'urn:epc:id:sscc:1234567.0000000001')"
    )
    con.close()
    before = fingerprint(paths.state.parent)
    store, view = open_state_view(paths.state)
    try:
        rows = store.con.execute(
            "SELECT parent, child_key IS NOT NULL FROM shipping_hierarchy"
        ).fetchall()
        assert rows == [("urn:epc:id:sscc:1234567.0000000001", True)]
        assert "shipping_aggregation" in view.materialised and not view.viewed
    finally:
        store.close()
    assert fingerprint(paths.state.parent) == before


def test_validate_through_the_command_line_changes_no_file(tmp_path: Path) -> None:
    paths = paths_in(tmp_path)
    paths.inbox.mkdir()
    paths.outbox.mkdir()
    run_local(paths, SETTLED, DAY)
    drop(paths.inbox, {n: t for n, t in demo_files(DAY.date()).items()})
    (tmp_path / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")
    before = fingerprint(paths.inbox, paths.state.parent, paths.outbox)
    result = _cli(tmp_path, "--config", str(tmp_path / "cmi.toml"), "--report", str(tmp_path / "r"))
    assert result.exit_code == 4, result.output
    assert fingerprint(paths.inbox, paths.state.parent, paths.outbox) == before
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["rejects.csv", "run_summary.json"]
    assert "would_apply" in result.output or "would apply" in result.output
