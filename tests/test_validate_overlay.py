"""`cmi validate`'s overlay at year five (SPEC §1, §8): the tables that only grow are not
copied, and the packaging hierarchy is copied one CMO at a time — yet every rule judges as
a run on the same state does, and the store stays as it was."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl

from connectors.demo import demo_files
from connectors.epcis import stage_document
from connectors.state_view import open_state_view
from connectors.store import open_store
from flows.pipeline import run_local
from flows.validate import EVERY_FILE, WRITES
from tests.pipeline_helpers import SETTLED, drop, paths_in
from tests.test_validate import _judge_then_run, _outcomes, fingerprint
from transforms.context import RunContext
from transforms.shipping import reconcile_document
from transforms.state import cmo_rows

DAY = dt.datetime(2026, 11, 23, 2, 0, 0)
NEXT = DAY + dt.timedelta(days=1)
ACME, OTHER = "ACME-01", "OTHER-01"
SSCC = "urn:epc:id:sscc:1223344.0000000017"  # the demo's pallet of 24 units, shipped
UNIT = "urn:epc:id:sgtin:4034567.000001.200000000001"
SGLN = "urn:epc:id:sgln:1223344.00012.0"  # ACME's

# the next day ACME takes one unit out of the stored pallet and ships the pallet again
RESHIP = f"""<?xml version="1.0" encoding="UTF-8"?>
<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1" schemaVersion="1.2">
  <EPCISBody><EventList>
    <AggregationEvent><eventTime>2026-11-24T06:00:00Z</eventTime>
      <eventTimeZoneOffset>+00:00</eventTimeZoneOffset>
      <parentID>{SSCC}</parentID><childEPCs><epc>{UNIT}</epc></childEPCs>
      <action>DELETE</action><bizStep>urn:epcglobal:cbv:bizstep:unpacking</bizStep>
      <bizLocation><id>{SGLN}</id></bizLocation></AggregationEvent>
    <ObjectEvent><eventTime>2026-11-24T07:00:00Z</eventTime>
      <eventTimeZoneOffset>+00:00</eventTimeZoneOffset>
      <epcList><epc>{SSCC}</epc></epcList><action>OBSERVE</action>
      <bizStep>urn:epcglobal:cbv:bizstep:shipping</bizStep>
      <bizLocation><id>{SGLN}</id></bizLocation></ObjectEvent>
  </EventList></EPCISBody>
</epcis:EPCISDocument>
"""


def _demo_day(root: Path) -> Path:
    """The demo day run into `root`; its store also holds a copy of ACME's hierarchy as
    another CMO's (so that there is a CMO whose rows no document changes)."""
    paths = paths_in(root)
    drop(paths.inbox, {n: t for n, t in demo_files(DAY.date()).items()})
    paths.outbox.mkdir(parents=True)
    run_local(paths, SETTLED, DAY)
    store = open_store(paths.state)
    try:
        con = store.con
        con.execute(
            "INSERT INTO cmos (cmo_id, cmo_name, sgln) VALUES (?, 'Other', '7654321.00001.0')",
            [OTHER],
        )
        for table in ("shipping_aggregation", "shipping_parents"):
            con.execute(
                f"INSERT INTO {table} SELECT * REPLACE (? AS cmo_id) FROM {table} WHERE cmo_id = ?",
                [OTHER, ACME],
            )
    finally:
        store.close()
    return paths.state


def _reconcile(con: object, doc: Path) -> tuple[dict[str, object], pl.DataFrame]:
    info = stage_document(con, doc)  # type: ignore[arg-type]
    con.execute("BEGIN")  # type: ignore[attr-defined]
    result = reconcile_document(con, info, RunContext("r2", NEXT).for_file(doc.name))  # type: ignore[arg-type]
    con.execute("COMMIT")  # type: ignore[attr-defined]
    assert result.exceptions is not None
    return result.reconciliation, result.exceptions


def _hierarchy(con: object) -> list[tuple[object, ...]]:
    return con.execute(  # type: ignore[attr-defined,no-any-return]
        "SELECT cmo_id, child, parent FROM shipping_hierarchy ORDER BY ALL"
    ).fetchall()


def test_a_shipping_document_copies_only_its_senders_hierarchy_and_judges_as_a_run(
    tmp_path: Path,
) -> None:
    """A document that unpacks one unit from a pallet stored the day before and ships the
    pallet: in the overlay it reaches the stored links as a run does (23 units, each
    already shipped), takes the unit out of its sender's links, and no other CMO's
    links are copied; the store stays byte for byte."""
    state = _demo_day(tmp_path / "day")
    doc = tmp_path / "shipping_acme_reship.xml"
    doc.write_text(RESHIP)
    copy = tmp_path / "copy" / "cmi.duckdb"
    copy.parent.mkdir()
    shutil.copy(state, copy)

    store = open_store(copy)  # the run's way: the store itself
    try:
        ran, ran_exceptions = _reconcile(store.con, doc)
        ran_links = _hierarchy(store.con)
    finally:
        store.close()
    assert ran["shipped"] == 23 and ran["already_shipped"] == 23

    before = fingerprint(state.parent)
    store, view = open_state_view(state)
    try:
        con = store.con
        view.materialise([*EVERY_FILE, *WRITES["shipping"]])
        ((stored, acme),) = con.execute(
            "SELECT count(*), count(*) FILTER (cmo_id = ?) FROM shipping_aggregation", [ACME]
        ).fetchall()
        assert stored == 2 * acme and acme >= 24
        # nothing copied until a document of a CMO changes its links
        assert con.execute("SELECT count(*) FROM shipping_aggregation_cmos").fetchone() == (0,)
        judged, judged_exceptions = _reconcile(con, doc)
        assert judged == ran
        assert judged_exceptions.equals(ran_exceptions)
        assert _hierarchy(con) == ran_links
        # only the sender's links were copied into the overlay, one fewer now
        assert con.execute(
            "SELECT DISTINCT cmo_id, count(*) OVER () FROM shipping_aggregation_cmos"
        ).fetchall() == [(ACME, acme - 1)]
        assert cmo_rows(con, "shipping_aggregation", ACME) == "shipping_aggregation_cmos"
        # a second document of the sender sees the first one's changes (no second copy)
        assert con.execute(
            "SELECT count(*) FROM shipping_aggregation_cmos WHERE cmo_id = ?", [ACME]
        ).fetchone() == (acme - 1,)
    finally:
        store.close()
    assert fingerprint(state.parent) == before


def test_a_run_writes_the_hierarchy_and_the_logs_themselves(tmp_path: Path) -> None:
    """Outside the overlay the rules change the store's own tables."""
    state = _demo_day(tmp_path / "day")
    store = open_store(state)
    try:
        assert cmo_rows(store.con, "shipping_aggregation", ACME) == "shipping_aggregation"
        assert cmo_rows(store.con, "shipping_parents", ACME) == "shipping_parents"
    finally:
        store.close()


def test_order_files_are_judged_without_copying_the_contract_logs(tmp_path: Path) -> None:
    """The contract log, the allocations and the order lines seen are only appended to: the
    overlay holds what the night's files add, the rules see the store's rows and them —
    and the next day's order files are judged as the run then judges them."""
    state = _demo_day(tmp_path)
    store, view = open_state_view(state)
    try:
        con = store.con
        view.materialise(WRITES["orders"])
        for table in ("contract_log", "contract_allocations", "contract_order_lines"):
            assert con.execute(f"SELECT count(*) FROM {table}_added").fetchone() == (0,)
            ((seen,),) = con.execute(f"SELECT count(*) FROM {table}").fetchall()
            assert seen > 0, table
    finally:
        store.close()
    nxt = demo_files(NEXT.date())
    files = {n: nxt[n] for n in nxt if n.startswith(("contract", "receipts", "orders"))}
    judged, ran = _judge_then_run(
        tmp_path, SETTLED, NEXT, {n: t.encode() for n, t in files.items()}
    )
    assert (judged / "rejects.csv").read_text() == (ran / "rejects.csv").read_text()
    got = __import__("json").loads((judged / "run_summary.json").read_text())
    want = __import__("json").loads((ran / "run_summary.json").read_text())
    assert _outcomes(got) == _outcomes(want)
    assert any(f["rows_applied"] for f in want["files"] if f["name"].startswith("orders"))
