"""The *written* mark (SPEC §8, §5.5): a recorded export file or partner answer is written
once, then marked; a file a transfer tool moved away is not written again; a run stopped
between a commit and the mark has its files written by the next run; stores written before
the mark are migrated (their files count as written)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from connectors.faults import RunStopped
from connectors.store import open_store
from tests.pipeline_helpers import csv, run_day, summary

P1 = "11223344556675"

MASTER = {
    "products_a.csv": csv("product_code,product_name", f"{P1},Medicine Demo Product"),
    "cmos_a.csv": csv(
        "cmo_id,cmo_name,city,country,produceable_products", f"ACME,Acme Pharma,Mannheim,DE,{P1}"
    ),
    "partnerships_a.csv": csv(
        "cmo_id,event,contact_email,tenant,payment_model",
        "ACME,invite,ops@acme.example,,",
        "ACME,accept,,acme,partner",
    ),
    "serial_pool_a.csv": csv("product_code,serial", *[f"{P1},S{i:05d}" for i in range(1, 101)]),
    "assignments_a.csv": csv("cmo_id,product_code,quantity", f"ACME,{P1},40"),
    "exports_a.csv": csv("cmo_id,product_code,quantity", f"ACME,{P1},5"),
    "partner_requests_a.csv": csv("request_id,cmo_id,product_code,quantity", f"REQ-1,ACME,{P1},3"),
}
EXPORT = f"serials/ACME/{P1}_Acme-Pharma_5_20261123020000.csv"
ANSWER = "partners/ACME/REQ-1.csv"


def _outbox_files(root: Path) -> dict[str, bytes]:
    out = root / "outbox"
    return {
        str(p.relative_to(out)): p.read_bytes()
        for sub in ("serials", "partners")
        for p in sorted((out / sub).rglob("*"))
        if p.is_file()
    }


def _state(root: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(root / "state" / "cmi.duckdb"))


def _marks(root: Path) -> dict[str, object]:
    con = _state(root)
    try:
        return dict(con.execute("SELECT rel_path, written_at FROM outbox_files").fetchall())
    finally:
        con.close()


def test_files_are_marked_written_with_the_runs_clock(tmp_path: Path) -> None:
    run_day(tmp_path, "2026-11-23T02:00:00", MASTER)
    assert sorted(_outbox_files(tmp_path)) == [ANSWER, EXPORT]
    marks = _marks(tmp_path)
    assert sorted(marks) == [ANSWER, EXPORT]
    assert {str(v) for v in marks.values()} == {"2026-11-23 02:00:00"}


def test_a_file_moved_away_after_it_was_written_is_not_written_again(tmp_path: Path) -> None:
    # a transfer tool picks files up from the outbox: the CMO must not get them every night
    run_day(tmp_path, "2026-11-23T02:00:00", MASTER)
    for rel in (EXPORT, ANSWER):
        (tmp_path / "outbox" / rel).unlink()
    out = run_day(tmp_path, "2026-11-24T02:00:00")
    assert _outbox_files(tmp_path) == {}
    assert not any("written" in w for w in summary(tmp_path, out["run_id"])["warnings"])


def test_a_file_recorded_but_not_marked_written_is_written_by_the_next_run(
    tmp_path: Path,
) -> None:
    run_day(tmp_path, "2026-11-23T02:00:00", MASTER)
    expected = _outbox_files(tmp_path)
    # as a run killed between the export's commit and its mark leaves it: recorded, the
    # file maybe not (or half) written, no mark
    con = _state(tmp_path)
    con.execute("UPDATE outbox_files SET written_at = NULL WHERE rel_path = ?", [EXPORT])
    con.close()
    (tmp_path / "outbox" / EXPORT).unlink()
    (tmp_path / "outbox" / ANSWER).unlink()  # picked up: stays away
    out = run_day(tmp_path, "2026-11-24T02:00:00")
    assert _outbox_files(tmp_path) == {EXPORT: expected[EXPORT]}
    assert str(_marks(tmp_path)[EXPORT]) == "2026-11-24 02:00:00"
    warnings = summary(tmp_path, out["run_id"])["warnings"]
    assert any("written now" in w and EXPORT in w for w in warnings), warnings
    # and once only
    (tmp_path / "outbox" / EXPORT).unlink()
    run_day(tmp_path, "2026-11-25T02:00:00")
    assert _outbox_files(tmp_path) == {}


def test_a_file_that_could_not_be_written_is_written_by_the_next_run(tmp_path: Path) -> None:
    blocked = tmp_path / "outbox" / "partners"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the partners folder should be")
    with pytest.raises(RunStopped):  # §8 stop, don't cascade
        run_day(tmp_path, "2026-11-23T02:00:00", MASTER)
    # the answer is recorded, not marked written (the export file after it may have been
    # applied and written while the answer was being written: then it is marked)
    first = _marks(tmp_path)
    assert first[ANSWER] is None and str(first.get(EXPORT, "2026-11-23 02:00:00")) == (
        "2026-11-23 02:00:00"
    )
    blocked.unlink()
    run_day(tmp_path, "2026-11-24T02:00:00")
    assert sorted(_outbox_files(tmp_path)) == [ANSWER, EXPORT]
    assert str(_marks(tmp_path)[ANSWER]) == "2026-11-24 02:00:00"


def test_a_repeated_request_writes_its_first_answer_again_only_when_it_left_the_outbox(
    tmp_path: Path,
) -> None:
    run_day(tmp_path, "2026-11-23T02:00:00", MASTER)
    answer = _outbox_files(tmp_path)[ANSWER]
    again = {"partner_requests_b.csv": csv(
        "request_id,cmo_id,product_code,quantity", f"REQ-1,ACME,{P1},3")}  # fmt: skip
    # still in the outbox: kept as it is, nothing written
    out = run_day(tmp_path, "2026-11-24T02:00:00", again)
    assert str(_marks(tmp_path)[ANSWER]) == "2026-11-23 02:00:00"
    assert not any(
        "written and delivered again" in w for w in summary(tmp_path, out["run_id"])["warnings"]
    )
    # picked up, then asked for again: the partner gets the same answer once more
    (tmp_path / "outbox" / ANSWER).unlink()
    again = {"partner_requests_c.csv": csv(
        "request_id,cmo_id,product_code,quantity", f"REQ-1,ACME,{P1},3", f"REQ-1,ACME,{P1},3")}  # fmt: skip
    out = run_day(tmp_path, "2026-11-25T02:00:00", again)
    assert _outbox_files(tmp_path)[ANSWER] == answer
    assert str(_marks(tmp_path)[ANSWER]) == "2026-11-25 02:00:00"
    warnings = summary(tmp_path, out["run_id"])["warnings"]
    assert sum("written and delivered again" in w for w in warnings) == 1, warnings
    # nothing new was served
    con = _state(tmp_path)
    assert con.execute("SELECT count(*) FROM outbox_files WHERE kind = 'partner'").fetchone() == (
        1,
    )
    con.close()


def test_a_store_written_before_the_mark_counts_its_files_as_written(tmp_path: Path) -> None:
    run_day(tmp_path, "2026-11-23T02:00:00", MASTER)
    con = _state(tmp_path)  # the outbox_files of a store written before the marks
    for column in ("written_at", "delivered_at", "delivered_to", "delivery_attempts"):
        con.execute(f"ALTER TABLE outbox_files DROP COLUMN {column}")
    con.close()
    (tmp_path / "outbox" / EXPORT).unlink()  # picked up by a transfer tool
    store = open_store(tmp_path / "state" / "cmi.duckdb")
    try:
        rows = store.con.execute(
            "SELECT rel_path, written_at = created, delivered_at, delivery_attempts FROM outbox_files"
        ).fetchall()
    finally:
        store.close()
    assert sorted(rows) == [(ANSWER, True, None, 0), (EXPORT, True, None, 0)]
    run_day(tmp_path, "2026-11-24T02:00:00")
    assert sorted(_outbox_files(tmp_path)) == [ANSWER]
