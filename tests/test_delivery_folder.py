"""Delivery to a folder (`file://`, e.g. a mounted share), SPEC §8.1 and §10: the final name
appears only whole, a file is delivered once, a failure leaves it pending for the next runs,
a conflict is never overwritten, and the report says what each try did."""

from __future__ import annotations

import os
from pathlib import Path

from tests.delivery_helpers import (
    config,
    day_one,
    exported,
    files_in,
    folder_target,
    forget_delivered,
    marks,
    more_exports,
    night,
)
from tests.mounts import tmpfs

DAY1, DAY2, DAY3 = "2026-11-23T02:00:00", "2026-11-24T02:00:00", "2026-11-25T02:00:00"
HEADER = "cmo_id,file_name,url,outcome,attempts,delivered_at,message"


def test_files_are_delivered_to_the_folder_once_and_marked(tmp_path: Path) -> None:
    drop = tmp_path / "share" / "acme"
    drop.mkdir(parents=True)
    cfg = config(folder_target("ACME", drop))
    s = night(tmp_path, DAY1, cfg, day_one())
    sent = exported(tmp_path, "ACME")
    assert files_in(drop) == sent and len(sent) == 2  # byte-identical, no temporary name left
    assert s["header"] == HEADER
    assert [(r["cmo_id"], r["outcome"], r["attempts"], r["delivered_at"], r["message"])
            for r in s["rows"]] == [("ACME", "delivered", "1", DAY1, "")] * 2  # fmt: skip
    assert [r["file_name"] for r in s["rows"]] == sorted(
        sent, key=lambda n: "_50_" in n
    )  # oldest first
    assert {r["url"] for r in s["rows"]} == {f"file://{drop}"}
    assert s["deliveries"] == {"delivered": 2, "already_there": 0, "failed": 0, "pending": 0}
    assert {m[:2] for n, m in marks(tmp_path).items() if n in sent} == {
        ("2026-11-23 02:00:00", f"file://{drop}")
    }
    # BETA has no [delivery] section: its file stays in the outbox only
    assert marks(tmp_path)[next(iter(exported(tmp_path, "BETA")))][0] is None
    # the next night sends nothing again, even after the CMO took the files away
    for p in drop.iterdir():
        p.unlink()
    s = night(tmp_path, DAY2, cfg)
    assert s["rows"] == [] and s["deliveries"]["pending"] == 0
    assert files_in(drop) == {}


def test_a_missing_folder_is_a_failed_delivery_retried_by_the_next_runs(tmp_path: Path) -> None:
    drop = tmp_path / "share" / "acme"
    cfg = config(folder_target("ACME", drop))
    s = night(tmp_path, DAY1, cfg, day_one())
    assert not drop.exists(), "a delivery folder is never created"
    assert [(r["outcome"], r["attempts"], r["delivered_at"]) for r in s["rows"]] == [
        ("failed", "1", "")
    ] * 2
    assert all("does not exist" in r["message"] for r in s["rows"])
    assert s["deliveries"] == {"delivered": 0, "already_there": 0, "failed": 2, "pending": 2}
    assert any("ACME" in w and "stay pending" in w for w in s["warnings"]), s["warnings"]
    # a second night, still missing, and a new export meanwhile
    s = night(tmp_path, DAY2, cfg, more_exports("exports_b.csv", [("ACME", 10)]))
    assert [(r["outcome"], r["attempts"]) for r in s["rows"]] == [
        ("failed", "2"), ("failed", "2"), ("failed", "1")]  # fmt: skip
    drop.mkdir(parents=True)
    s = night(tmp_path, DAY3, cfg)
    assert [(r["outcome"], r["attempts"], r["delivered_at"]) for r in s["rows"]] == [
        ("delivered", "3", DAY3), ("delivered", "3", DAY3), ("delivered", "2", DAY3)]  # fmt: skip
    assert files_in(drop) == exported(tmp_path, "ACME")
    assert s["deliveries"] == {"delivered": 3, "already_there": 0, "failed": 0, "pending": 0}


def test_a_different_file_under_the_final_name_is_a_conflict_never_overwritten(
    tmp_path: Path,
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    cfg = config(folder_target("ACME", drop))
    # the names are known before the run: the export files of day one
    night(tmp_path / "probe", DAY1, config(), day_one())
    first, second = sorted(exported(tmp_path / "probe", "ACME"))
    (drop / first).write_bytes(b"someone else's file\n")
    s = night(tmp_path, DAY1, cfg, day_one())
    by_name = {r["file_name"]: r for r in s["rows"]}
    assert by_name[first]["outcome"] == "failed" and "different file" in by_name[first]["message"]
    assert by_name[second]["outcome"] == "delivered"
    assert (drop / first).read_bytes() == b"someone else's file\n"
    assert s["deliveries"] == {"delivered": 1, "already_there": 0, "failed": 1, "pending": 1}
    assert sorted(files_in(drop)) == [first, second]  # no temporary file left behind
    # moved away: the next run delivers it
    (drop / first).unlink()
    s = night(tmp_path, DAY2, cfg)
    assert [(r["file_name"], r["outcome"], r["attempts"]) for r in s["rows"]] == [
        (first, "delivered", "2")
    ]
    assert files_in(drop) == exported(tmp_path, "ACME")


def test_a_file_found_under_its_final_name_is_marked_already_there_not_written(
    tmp_path: Path,
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    cfg = config(folder_target("ACME", drop))
    night(tmp_path, DAY1, cfg, day_one())
    name = sorted(exported(tmp_path, "ACME"))[0]
    before = os.stat(drop / name)
    forget_delivered(tmp_path, name)  # a run killed between the rename and the mark
    # killed between the hard link and the removal of the temporary name, even
    os.link(drop / name, drop / f".{name}.part")
    s = night(tmp_path, DAY2, cfg)
    assert [
        (r["file_name"], r["outcome"], r["attempts"], r["delivered_at"]) for r in s["rows"]
    ] == [(name, "already_there", "1", DAY2)]
    after = os.stat(drop / name)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(files_in(drop)) == sorted(exported(tmp_path, "ACME")), "no temporary name left"
    assert s["deliveries"] == {"delivered": 0, "already_there": 1, "failed": 0, "pending": 0}
    assert marks(tmp_path)[name][0] == "2026-11-24 02:00:00"


def test_a_file_that_left_the_outbox_before_its_delivery_is_delivered_from_the_state(
    tmp_path: Path,
) -> None:
    drop = tmp_path / "drop"
    cfg = config(folder_target("ACME", drop))
    night(tmp_path, DAY1, cfg, day_one())  # the folder is missing: pending
    sent = exported(tmp_path, "ACME")
    for name in sent:  # a transfer tool took them from the outbox meanwhile
        (tmp_path / "outbox" / "serials" / "ACME" / name).unlink()
    drop.mkdir()
    s = night(tmp_path, DAY2, cfg)
    assert [r["outcome"] for r in s["rows"]] == ["delivered", "delivered"]
    assert files_in(drop) == sent
    assert exported(tmp_path, "ACME") == {}, "not written into the outbox again"


def test_a_full_disk_fails_the_file_that_does_not_fit_and_leaves_no_partial_file(
    tmp_path: Path,
) -> None:
    cfg = config(folder_target("ACME", tmp_path / "share"))
    with tmpfs(tmp_path / "share", "160k") as share:
        s = night(tmp_path, DAY1, cfg, day_one({"ACME": [5000, 3000], "BETA": [1]}))
        big, small = sorted(exported(tmp_path, "ACME"), key=lambda n: "_3000_" in n)
        assert [(r["file_name"], r["outcome"]) for r in s["rows"]] == [
            (big, "delivered"), (small, "failed")]  # fmt: skip
        assert "No space left" in s["rows"][1]["message"]
        assert sorted(files_in(share)) == [big], "no partial file, under any name"
        (share / big).unlink()  # the CMO picked it up: room again
        s = night(tmp_path, DAY2, cfg)
        assert [(r["file_name"], r["outcome"], r["attempts"]) for r in s["rows"]] == [
            (small, "delivered", "2")
        ]
        assert files_in(share) == {small: exported(tmp_path, "ACME")[small]}


def test_report_html_shows_the_deliveries_as_deliveries_csv_and_the_verdict_names_them(
    tmp_path: Path,
) -> None:
    from lxml import html as lxml_html

    drop = tmp_path / "drop"
    drop.mkdir()
    # ACME to a folder that exists, BETA to one that does not: one failed delivery
    cfg = config(folder_target("ACME", drop), folder_target("BETA", tmp_path / "missing"))
    s = night(tmp_path, DAY1, cfg, day_one())
    page = lxml_html.fromstring((s["folder"] / "report.html").read_bytes())
    (table,) = page.xpath('//table[@data-report="deliveries.csv"]')
    shown = [
        {td.get("data-col"): td.text_content().strip() for td in tr.xpath("td")}
        for tr in table.xpath(".//tr[@data-row]")
    ]
    # the page shows the time with a space where the CSV has a T
    assert shown == [{**r, "delivered_at": r["delivered_at"].replace("T", " ")} for r in s["rows"]]
    assert [(r["cmo_id"], r["outcome"]) for r in shown] == [
        ("ACME", "delivered"), ("ACME", "delivered"), ("BETA", "failed")]  # fmt: skip
    cards = {n.get("data-delivery"): n.text_content() for n in page.xpath("//*[@data-delivery]")}
    assert cards == {"delivered": "2", "already_there": "0", "failed": "1", "pending": "1"}
    text = page.text_content()
    assert "Needs attention" in text and "1 delivery(ies) failed" in text


def test_a_file_that_cannot_be_read_fails_alone(tmp_path: Path) -> None:
    from connectors import delivery as delivery_io

    drop = tmp_path / "drop"
    drop.mkdir()
    ok = tmp_path / "ok.csv"
    ok.write_bytes(b"product_code,serial\n1,2\n")
    jobs = [delivery_io.Job(1, "gone.csv", tmp_path / "gone.csv"), delivery_io.Job(2, "ok.csv", ok)]
    work = [(folder_target("ACME", drop), jobs)]
    got = {o.file_id: o for batch in delivery_io.deliver(work) for o in batch}
    assert got[1].outcome == "failed" and "cannot read" in got[1].message, got[1]
    assert got[2].outcome == "delivered"
    assert files_in(drop) == {"ok.csv": ok.read_bytes()}
