"""Shipping files through the nightly pipeline (without Prefect): EPCIS XML and JSON-LD
inbox kinds, the reports of §10, decommissioned serials leaving the exports (§3, §5, §6)."""

from __future__ import annotations

import csv as csvlib
import io
from pathlib import Path

import pytest
from epcis_docs import Doc, Ev, to_jsonld, to_xml

from tests.pipeline_helpers import csv, report, run_day, summary

P1 = "00614141123452"  # GTIN of urn:epc:id:sgtin:0614141.012345.*
SGLN = "0614141.00001.0"
LOC = f"urn:epc:id:sgln:{SGLN}"


def unit(serial: str) -> str:
    return f"urn:epc:id:sgtin:0614141.012345.{serial}"


MASTER = {
    "products_a.csv": csv("product_code,product_name", f"{P1},Demo"),
    "cmos_a.csv": csv(
        "cmo_id,cmo_name,city,country,produceable_products,sgln",
        f"ACME,Acme Pharma,Mannheim,DE,{P1},{SGLN}",
    ),
    "serial_pool_a.csv": csv("product_code,serial", *[f"{P1},S{i}" for i in range(1, 7)]),
    "assignments_a.csv": csv("cmo_id,product_code,quantity", f"ACME,{P1},6"),
}


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csvlib.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("ext", ["json", "jsonld", "xml"])
def test_a_shipping_document_is_applied_and_reported_in_every_syntax(
    tmp_path: Path, ext: str
) -> None:
    """S1-S3 commissioned (lot L1), S1 shipped, S2 destroyed; an export of 3 then finds
    S4-S6 only: a used serial is never exported."""
    doc = Doc(
        [
            Ev(biz_step="commissioning", epcs=[unit("S1"), unit("S2"), unit("S3")],
               biz_location=LOC, lot="L1", expiry="2027-01-31"),
            Ev(action="OBSERVE", biz_step="shipping", epcs=[unit("S1")], biz_location=LOC),
            Ev(action="DELETE", biz_step="destroying", epcs=[unit("S2"), unit("S9")],
               biz_location=LOC),
        ]
    )  # fmt: skip
    text = to_jsonld(doc) if ext != "xml" else to_xml(doc)
    files = dict(MASTER)
    files[f"shipping_day1.{ext}"] = text
    files["exports_a.csv"] = csv("cmo_id,product_code,quantity", f"ACME,{P1},3")
    out = run_day(tmp_path, "2026-11-23T02:00:00", files)
    run_id = out["run_id"]
    entry = next(f for f in summary(tmp_path, run_id)["files"] if f["kind"] == "shipping")
    assert (entry["outcome"], entry["rows_read"], entry["rows_applied"]) == ("applied", 6, 5)
    rec = rows_of(report(tmp_path, run_id, "shipping_reconciliation.csv"))
    assert list(rec[0])[4:8] == ["commissioned", "shipped", "decommissioned", "ok"]
    assert {k: rec[0][k] for k in ("commissioned", "shipped", "decommissioned", "ok")} == {
        "commissioned": "3", "shipped": "1", "decommissioned": "2", "ok": "5",
    }  # fmt: skip
    exc = rows_of(report(tmp_path, run_id, "shipping_exceptions.csv"))
    assert [(r["event_index"], r["event_kind"], r["serial"], r["outcome"]) for r in exc] == [
        ("3", "decommissioning", "S9", "UNKNOWN_SERIAL")
    ]
    lots = rows_of(report(tmp_path, run_id, "lot_reconciliation.csv"))
    assert lots == [
        {"cmo_id": "ACME", "product_code": P1, "lot": "L1", "expiry": "2027-01-31",
         "commissioned": "3", "shipped": "1", "decommissioned": "1", "exceptions": "0"},
    ]  # fmt: skip
    balance = rows_of(report(tmp_path, run_id, "serial_balance.csv"))[0]
    assert (balance["assigned_not_exported"], balance["decommissioned"]) == ("0", "1")
    export = next((tmp_path / "outbox" / "serials" / "ACME").iterdir())
    assert export.read_text().splitlines()[1:] == [f"{P1},S4", f"{P1},S5", f"{P1},S6"]


def test_the_same_json_ld_document_on_a_later_night_is_a_duplicate(tmp_path: Path) -> None:
    doc = Doc([Ev(biz_step="commissioning", epcs=[unit("S1")], biz_location=LOC)])
    first = run_day(
        tmp_path, "2026-11-23T02:00:00", {**MASTER, "shipping_a.jsonld": to_jsonld(doc)}
    )
    again = run_day(tmp_path, "2026-11-24T02:00:00", {"shipping_b.jsonld": to_jsonld(doc)})
    entry = summary(tmp_path, again["run_id"])["files"][0]
    assert entry["outcome"] == "duplicate"
    assert any(first["run_id"] in w for w in summary(tmp_path, again["run_id"])["warnings"])
    assert (tmp_path / "inbox" / "archive" / again["run_id"] / "shipping_b.jsonld").exists()


def test_the_same_xml_document_dropped_on_two_nights_is_a_duplicate(tmp_path: Path) -> None:
    """§8 (issue 18 item 9): the same shipping_*.xml again on the next night is not applied
    again (a shipped serial would be ALREADY_SHIPPED): it is archived, its outcome is
    `duplicate`, and a warning names the run that first applied it."""
    doc = Doc([Ev(biz_step="commissioning", epcs=[unit("S1"), unit("S2")], biz_location=LOC,
                  lot="L1"),
               Ev(biz_step="shipping", epcs=[unit("S1")], biz_location=LOC)])  # fmt: skip
    xml = to_xml(doc)
    first = run_day(tmp_path, "2026-11-23T02:00:00", {**MASTER, "shipping_a.xml": xml})
    again = run_day(tmp_path, "2026-11-24T02:00:00", {"shipping_a.xml": xml})
    s = summary(tmp_path, again["run_id"])
    (entry,) = s["files"]
    assert (entry["name"], entry["kind"], entry["outcome"]) == (
        "shipping_a.xml",
        "shipping",
        "duplicate",
    )
    assert [w for w in s["warnings"] if "shipping_a.xml" in w and first["run_id"] in w]
    assert (tmp_path / "inbox" / "archive" / again["run_id"] / "shipping_a.xml").exists()
    assert not (tmp_path / "inbox" / "quarantine").exists()
    for name in ("shipping_reconciliation.csv", "shipping_exceptions.csv"):  # nothing new
        assert len(report(tmp_path, again["run_id"], name).splitlines()) == 1
    lots = rows_of(report(tmp_path, again["run_id"], "lot_reconciliation.csv"))
    assert [(r["commissioned"], r["shipped"], r["exceptions"]) for r in lots] == [("2", "1", "0")]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"type": "EPCISDocument", "epcisBody": {"eventList": [', "not JSON at line 1"),
        ('<?xml version="1.0"?><a/>', "not JSON at line 1"),
        ('{"type": "EPCISQueryDocument", "epcisBody": {}}', "not an EPCIS document"),
        ("", "the file is empty"),
    ],
)
def test_a_json_ld_file_that_is_not_epcis_is_quarantined_and_the_night_goes_on(
    tmp_path: Path, text: str, words: str
) -> None:
    out = run_day(tmp_path, "2026-11-23T02:00:00", {**MASTER, "shipping_x.json": text})
    entries = {f["name"]: f for f in summary(tmp_path, out["run_id"])["files"]}
    assert entries["shipping_x.json"]["outcome"] == "quarantined"
    assert words in entries["shipping_x.json"]["reason"]
    assert entries["assignments_a.csv"]["outcome"] == "applied"
    folder = tmp_path / "inbox" / "quarantine" / out["run_id"]
    assert words in (folder / "shipping_x.json.reason.txt").read_text()
