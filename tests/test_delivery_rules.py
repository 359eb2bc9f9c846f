"""The rules of the written and delivered marks, on the state alone (SPEC §8, §8.1, §10)."""

from __future__ import annotations

import datetime as dt

import duckdb
from helpers_serials import DEMO, make_ctx, rows, seed, valid_rows

from schemas.serials import AssignmentsFile, ExportsFile
from transforms import delivery as d
from transforms.serials import apply_assignments, apply_exports

CTX = make_ctx()
NIGHT = dt.datetime(2026, 11, 23, 2, 0, 0)


def _recorded() -> duckdb.DuckDBPyConnection:
    """Three export files: two of C1, one of C2, recorded in that order."""
    con = seed(products=[DEMO], cmos={"C1": [DEMO], "C2": [DEMO]}, names={"C1": "Acme", "C2": "Acme"},
               pool={DEMO: [f"S{i}" for i in range(20)]})  # fmt: skip
    apply_assignments(con, valid_rows(AssignmentsFile, rows(cmo_id=["C1", "C2"], product_code=DEMO, quantity=["8", "8"])), CTX)  # fmt: skip
    apply_exports(con, valid_rows(ExportsFile, rows(cmo_id=["C1", "C1", "C2"], product_code=DEMO, quantity=["2", "1", "3"])), CTX)  # fmt: skip
    return con


def _ids(con: duckdb.DuckDBPyConnection) -> list[int]:
    return [
        r[0] for r in con.execute("SELECT file_id FROM outbox_files ORDER BY file_id").fetchall()
    ]


def test_only_written_undelivered_files_of_cmos_with_a_target_are_pending_oldest_first() -> None:
    con = _recorded()
    first, second, third = _ids(con)
    assert d.unwritten_files(con) == [first, second, third]
    assert d.pending_deliveries(con, ["C1", "C2"]) == []  # nothing written yet
    d.mark_written(con, [third, first], NIGHT)
    assert d.unwritten_files(con) == [second]
    assert [p.file_id for p in d.pending_deliveries(con, ["C1", "C2"])] == [first, third]
    assert [p.file_id for p in d.pending_deliveries(con, ["C2"])] == [third]
    tried = {p.file_id: p for p in d.pending_deliveries(con, ["C1", "C2"])}
    d.record_outcomes(con, [d.Outcome(first, d.DELIVERED)], tried, {"C1": "file:///x"}, NIGHT)
    assert [p.file_id for p in d.pending_deliveries(con, ["C1", "C2"])] == [third]


def test_every_try_counts_and_only_a_success_marks_the_file_delivered() -> None:
    con = _recorded()
    first, second, _ = _ids(con)
    d.mark_written(con, _ids(con), NIGHT)
    urls = {"C1": "sftp://cmi@h:22/in"}
    tried = {p.file_id: p for p in d.pending_deliveries(con, ["C1"])}
    outcomes = [d.Outcome(first, d.FAILED, "down"), d.Outcome(second, d.ALREADY_THERE)]
    rows_ = d.record_outcomes(con, outcomes, tried, urls, NIGHT)
    assert [(r.outcome, r.attempts, r.delivered_at, r.url) for r in rows_] == [
        ("failed", 1, "", "sftp://cmi@h:22/in"), ("already_there", 1, "2026-11-23T02:00:00", "sftp://cmi@h:22/in")]  # fmt: skip
    later = NIGHT + dt.timedelta(days=1)
    tried = {p.file_id: p for p in d.pending_deliveries(con, ["C1"])}
    (row,) = d.record_outcomes(con, [d.Outcome(first, d.DELIVERED)], tried, urls, later)
    assert (row.attempts, row.delivered_at) == (2, "2026-11-24T02:00:00")
    marks = con.execute(
        "SELECT file_id, delivered_at, delivered_to FROM outbox_files ORDER BY file_id"
    ).fetchall()
    assert marks[:2] == [(first, later, urls["C1"]), (second, NIGHT, urls["C1"])]
    assert d.deliveries_summary(rows_, pending=1) == {
        "delivered": 0,
        "already_there": 1,
        "failed": 1,
        "pending": 1,
    }


def test_a_file_asked_for_again_is_unmarked_written_and_delivered() -> None:
    con = _recorded()
    first, *_ = _ids(con)
    d.mark_written(con, _ids(con), NIGHT)
    tried = {p.file_id: p for p in d.pending_deliveries(con, ["C1"])}
    d.record_outcomes(con, [d.Outcome(first, d.DELIVERED)], tried, {"C1": "file:///x"}, NIGHT)
    d.ask_again(con, [first])
    assert d.unwritten_files(con) == [first]
    assert con.execute("SELECT delivered_at, delivered_to, delivery_attempts FROM outbox_files WHERE file_id = ?", [first]).fetchone() == (None, None, 1)  # fmt: skip


def test_recorded_files_are_found_by_name_or_path_and_a_shared_name_is_ambiguous() -> None:
    con = _recorded()
    names = dict(con.execute("SELECT file_id, rel_path FROM outbox_files").fetchall())
    c1_first, c1_second, c2 = sorted(names)
    same = names[c1_first].rsplit("/", 1)[
        1
    ]  # C1 and C2 share the name Acme: C2's 3-serial file differs
    found, unknown, ambiguous = d.find_recorded(con, [same, f"./{names[c2]}", "nope.csv", same])
    assert [f.file_id for f in found] == [c1_first, c2]
    assert unknown == ["nope.csv"] and ambiguous == {}
    con.execute("UPDATE outbox_files SET file_name = ? WHERE file_id = ?", [same, c2])
    _, _, ambiguous = d.find_recorded(con, [same])
    assert list(ambiguous) == [same] and len(ambiguous[same]) == 2


def test_deliveries_csv_has_the_columns_of_section_10_and_blank_cells() -> None:
    frame = d.deliveries_frame([d.DeliveryRow("C1", "f.csv", "file:///x", "failed", 3, "", "down")])
    assert frame.columns == [
        "cmo_id",
        "file_name",
        "url",
        "outcome",
        "attempts",
        "delivered_at",
        "message",
    ]
    assert frame.row(0) == ("C1", "f.csv", "file:///x", "failed", 3, None, "down")


def test_the_readme_delivery_example_is_a_valid_configuration() -> None:
    import re
    from pathlib import Path

    from connectors.config import parse_config

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Delivery to the CMOs", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block, "README shows a [delivery] example"
    import tomllib

    cfg = parse_config(tomllib.loads(block.group(1)))
    assert [(t.cmo_id, t.url.split(":", 1)[0]) for t in cfg.delivery] == [
        ("ACME-01", "sftp"), ("BIOFILL", "file")]  # fmt: skip
    acme = cfg.delivery_for("ACME-01")
    assert acme is not None and acme.key_file and acme.known_hosts
