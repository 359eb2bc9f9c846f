"""Every rule of SPEC §6 in every syntax: EPCIS 1.2 XML, 2.0 XML and 2.0 JSON-LD (read
by the fast path that builds events in C, and token by token).

The documents are generated (`epcis_docs`), so these tests never skip; the public
fixtures are read in `test_epcis_parser.py` and `test_epcis_jsonld.py`.  A property
test writes one random document in the three syntaxes and expects identical reports.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest
from epcis_docs import CBV_FORMS, LOT_SOURCES, SYNTAXES, Doc, Ev, write
from helpers_serials import add_sgtins
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.epcis import stage_document
from connectors.store import memory_connection
from schemas.shipping import (
    LotReconciliationReport,
    ShippingExceptionsReport,
    ShippingReconciliationReport,
)
from transforms.context import RunContext
from transforms.epc import parse_epc
from transforms.shipping import ShippingResult, lot_reconciliation, reconcile_document

CTX = RunContext("20240517T143005", dt.datetime(2024, 5, 17, 14, 30, 5))
CP = "0614141"
SGLN_A = "0614141.00001.0"
SGLN_B = "0614141.00009.0"
LOC_A = f"urn:epc:id:sgln:{SGLN_A}"


def unit(serial: str, ref: str = "012345") -> str:
    return f"urn:epc:id:sgtin:{CP}.{ref}.{serial}"


def sscc(n: int) -> str:
    return f"urn:epc:id:sscc:{CP}.0{n:09d}"


UNIT_GTIN = parse_epc(unit("1")).product_code or ""
CASE_GTIN = parse_epc(unit("1", "512345")).product_code or ""


def dl(serial: str) -> str:
    """The Digital Link of `unit(serial)` (another host each time it is written)."""
    return f"https://brand.example/01/{UNIT_GTIN}/21/{serial}"


def store() -> duckdb.DuckDBPyConnection:
    """CMO A (sgln A, makes the unit and case GTINs), CMO B (sgln B)."""
    con = memory_connection()
    con.execute(
        "INSERT INTO cmos (cmo_id, cmo_name, sgln) VALUES "
        f"('A', 'Alpha', '{SGLN_A}'), ('B', 'Beta', '{SGLN_B}')"
    )
    con.execute(f"INSERT INTO cmo_products VALUES ('A', '{UNIT_GTIN}', 1), ('A', '{CASE_GTIN}', 2)")
    return con


add_serials = add_sgtins


def run(
    con: duckdb.DuckDBPyConnection, folder: Path, doc: Doc, syntax: str, stem: str = "shipping_1"
) -> ShippingResult:
    path = write(doc, folder, syntax, stem)
    info = stage_document(con, path)
    con.execute("BEGIN")
    result = reconcile_document(con, info, CTX.for_file(path.name))
    con.execute("COMMIT")
    if result.quarantine_reason is None:
        ShippingReconciliationReport.validate(pl.DataFrame([result.reconciliation]))
        ShippingExceptionsReport.validate(result.exceptions)
    return result


def state(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[bool, bool, bool, str | None]]:
    rows = con.sql(
        "SELECT serial, commissioned, shipped, decommissioned, lot FROM serials ORDER BY serial"
    ).fetchall()
    return {s: (c, sh, d, lot) for s, c, sh, d, lot in rows}


def expiries(con: duckdb.DuckDBPyConnection) -> dict[str, dt.date | None]:
    return dict(con.sql("SELECT serial, expiry FROM serials ORDER BY serial").fetchall())


def exceptions(result: ShippingResult) -> list[tuple[object, ...]]:
    return sorted(
        (r["event_kind"], r["serial"] or r["epc"], r["outcome"])
        for r in result.exceptions.to_dicts()
    )


syntaxes = pytest.mark.parametrize("syntax", SYNTAXES)


# ------------------------------------------------------------------------ events read


@syntaxes
def test_a_transformation_commissioning_commissions_its_outputs(
    tmp_path: Path, syntax: str
) -> None:
    """Its outputEPCList with its ILMD lot; its inputs are not commissioned; another
    TransformationEvent is counted and skipped."""
    con = store()
    add_serials(con, [unit("in"), unit("out1"), unit("out2"), unit("rep")])
    doc = Doc(
        [
            Ev("TransformationEvent", biz_step="commissioning", inputs=[unit("in")],
               epcs=[unit("out1"), unit("out2")], biz_location=LOC_A, lot="T1",
               expiry="2027-03-31"),
            Ev("TransformationEvent", biz_step="repackaging", inputs=[unit("out1")],
               epcs=[unit("rep")], biz_location=LOC_A, lot="T2"),
        ]
    )  # fmt: skip
    rec = run(con, tmp_path, doc, syntax).reconciliation
    assert (rec["events_read"], rec["events_skipped"]) == (1, 1)
    assert (rec["commissioned"], rec["ok"]) == (2, 2)
    assert state(con) == {
        "in": (False, False, False, None),
        "out1": (True, False, False, "T1"),
        "out2": (True, False, False, "T1"),
        "rep": (False, False, False, None),
    }
    assert expiries(con)["out1"] == dt.date(2027, 3, 31)


@syntaxes
def test_other_event_types_are_counted_and_skipped(tmp_path: Path, syntax: str) -> None:
    con = store()
    add_serials(con, [unit("1")])
    doc = Doc(
        [
            Ev("AssociationEvent", parent="urn:epc:id:grai:4012345.55555.987", epcs=[unit("9")]),
            Ev("TransactionEvent", biz_step="shipping", epcs=[unit("1")], biz_location=LOC_A),
            Ev(biz_step="commissioning", epcs=[unit("1")], biz_location=LOC_A),
        ]
    )
    result = run(con, tmp_path, doc, syntax)
    rec = result.reconciliation
    assert (rec["events_read"], rec["events_skipped"], rec["commissioned"], rec["shipped"]) == (
        1, 2, 1, 0,
    )  # fmt: skip
    assert result.exceptions.height == 0


@syntaxes
def test_observe_aggregation_packs_like_add(tmp_path: Path, syntax: str) -> None:
    con = store()
    add_serials(con, [unit("1"), unit("2")])
    doc = Doc(
        [
            Ev("AggregationEvent", action="OBSERVE", biz_step="packing", parent=sscc(1),
               epcs=[unit("1"), unit("2")], biz_location=LOC_A),
            Ev(action="OBSERVE", biz_step="shipping", epcs=[sscc(1)], biz_location=LOC_A),
        ]
    )  # fmt: skip
    rec = run(con, tmp_path, doc, syntax).reconciliation
    assert (rec["shipped"], rec["ok"], rec["unknown_container"]) == (2, 2, 0)


# ------------------------------------------------------------------------------ CBV values


@pytest.mark.parametrize("form", CBV_FORMS)
@syntaxes
def test_cbv_values_count_in_every_form(tmp_path: Path, syntax: str, form: str) -> None:
    """bizStep and source types as URN, bare word, CURIE and web URI: the shipping
    event's owning-party source names the sender; commissioning and shipping count."""
    con = store()
    con.execute(f"INSERT INTO cmo_products VALUES ('B', '{UNIT_GTIN}', 1)")
    add_serials(con, [unit("1")], "B")
    doc = Doc(
        [
            Ev(biz_step="commissioning", epcs=[unit("1")], biz_location=LOC_A),
            Ev(action="OBSERVE", biz_step="shipping", epcs=[unit("1")], read_point=LOC_A,
               sources=[("possessing_party", LOC_A), ("owning_party", f"urn:epc:id:sgln:{SGLN_B}")]),
        ],
        cbv_form=form,
    )  # fmt: skip
    result = run(con, tmp_path, doc, syntax)
    assert result.sender_cmo_id == "B"
    assert (result.reconciliation["commissioned"], result.reconciliation["shipped"]) == (1, 1)
    assert state(con)["1"][:2] == (True, True)


# ---------------------------------------------------------------------- lot and expiry


@pytest.mark.parametrize("source", LOT_SOURCES)
@syntaxes
def test_each_lot_source_gives_the_lot_and_expiry(tmp_path: Path, syntax: str, source: str) -> None:
    con = store()
    add_serials(con, [unit("1")])
    ev = Ev(biz_step="commissioning", epcs=[unit("1")], biz_location=LOC_A, lot="L-" + source,
            expiry="2027-09-30", lot_source=source, expiry_source=source)  # fmt: skip
    run(con, tmp_path, Doc([ev]), syntax)
    assert state(con)["1"][3] == "L-" + source
    assert expiries(con)["1"] == dt.date(2027, 9, 30)


@pytest.mark.parametrize(
    ("first", "later"),
    [("ilmd", "event"), ("ilmd", "sap"), ("event", "sap"), ("event", "optel"), ("sap", "optel")],
)
@syntaxes
def test_the_earlier_lot_source_wins(tmp_path: Path, syntax: str, first: str, later: str) -> None:
    con = store()
    add_serials(con, [unit("1")])
    ev = Ev(biz_step="commissioning", epcs=[unit("1")], biz_location=LOC_A, lot="FIRST",
            lot_source=first, extra_lot=(later, "LATER"))  # fmt: skip
    run(con, tmp_path, Doc([ev]), syntax)
    assert state(con)["1"][3] == "FIRST"


@syntaxes
def test_lot_and_expiry_each_take_their_own_first_source(tmp_path: Path, syntax: str) -> None:
    """SAP's LOTNO, Optel's EXPIRY (20210930, YYYYMMDD), nothing in the ILMD."""
    con = store()
    add_serials(con, [unit("1")])
    ev = Ev(biz_step="commissioning", epcs=[unit("1")], biz_location=LOC_A, lot="SAPLOT",
            lot_source="sap", expiry="20210930", expiry_source="optel")  # fmt: skip
    run(con, tmp_path, Doc([ev]), syntax)
    assert state(con)["1"][3] == "SAPLOT"
    assert expiries(con)["1"] == dt.date(2021, 9, 30)


@pytest.mark.parametrize(
    ("written", "date"),
    [
        ("2027-02-28", dt.date(2027, 2, 28)),
        ("20270228", dt.date(2027, 2, 28)),
        ("270228", dt.date(2027, 2, 28)),
        ("280200", dt.date(2028, 2, 29)),  # GS1 YYMMDD, day 00: the month's last day
        ("271100", dt.date(2027, 11, 30)),
    ],
)
@syntaxes
def test_expiry_formats(tmp_path: Path, syntax: str, written: str, date: dt.date) -> None:
    con = store()
    add_serials(con, [unit("1")])
    ev = Ev(biz_step="commissioning", epcs=[unit("1")], biz_location=LOC_A, lot="L",
            expiry=written)  # fmt: skip
    result = run(con, tmp_path, Doc([ev]), syntax)
    assert expiries(con)["1"] == date
    assert result.exceptions.height == 0


@pytest.mark.parametrize("written", ["2027-02-30", "20271301", "271332", "31/01/2027", "2027-2-3"])
@syntaxes
def test_a_malformed_expiry_is_reported_and_the_serials_get_none(
    tmp_path: Path, syntax: str, written: str
) -> None:
    con = store()
    add_serials(con, [unit("1"), unit("2")])
    ev = Ev(biz_step="commissioning", epcs=[unit("1"), unit("2")], biz_location=LOC_A, lot="L",
            expiry=written, expiry_source="optel")  # fmt: skip
    result = run(con, tmp_path, Doc([ev]), syntax)
    assert result.exceptions.drop("file").to_dicts() == [
        {"event_index": 1, "event_kind": "commissioning", "product_code": None, "serial": None,
         "epc": written, "outcome": "MALFORMED_EXPIRY"},
    ]  # fmt: skip
    assert result.reconciliation["ok"] == 2
    assert expiries(con) == {"1": None, "2": None}
    assert lot_reconciliation(con).get_column("exceptions").to_list() == [0]


# ------------------------------------------------------------------------------ identifiers


@syntaxes
def test_a_digital_link_is_the_same_object_as_its_urn(tmp_path: Path, syntax: str) -> None:
    """Commissioned as Digital Links, packed as URNs into an SSCC written as a Digital
    Link, shipped as the SSCC's URN: one object each, whatever the writing."""
    con = store()
    add_serials(con, [unit("1"), unit("2/3")])
    sscc_dl = f"https://id.gs1.org/00/{parse_epc(sscc(7)).sscc}?linkType=all"
    doc = Doc(
        [
            Ev(biz_step="commissioning", epcs=[dl("1"), dl("2%2F3")], biz_location=LOC_A, lot="L"),
            Ev("AggregationEvent", biz_step="packing", parent=sscc_dl,
               epcs=[unit("1"), unit("2%2F3")], biz_location=LOC_A),
            Ev(action="OBSERVE", biz_step="shipping", epcs=[sscc(7)], biz_location=LOC_A),
        ]
    )  # fmt: skip
    result = run(con, tmp_path, doc, syntax)
    rec = result.reconciliation
    assert (rec["commissioned"], rec["shipped"], rec["ok"]) == (2, 2, 4)
    assert (rec["unknown_serial"], rec["unknown_container"], rec["malformed_epc"]) == (0, 0, 0)
    assert state(con) == {"1": (True, True, False, "L"), "2/3": (True, True, False, "L")}


@syntaxes
def test_a_digital_link_with_a_wrong_check_digit_is_malformed(tmp_path: Path, syntax: str) -> None:
    con = store()
    bad = f"https://id.gs1.org/01/{UNIT_GTIN[:-1]}{(int(UNIT_GTIN[-1]) + 1) % 10}/21/1"
    result = run(
        con, tmp_path, Doc([Ev(biz_step="commissioning", epcs=[bad], biz_location=LOC_A)]), syntax
    )
    assert exceptions(result) == [("commissioning", bad, "MALFORMED_EPC")]


@syntaxes
def test_class_level_identifiers_are_ignored_and_their_event_read(
    tmp_path: Path, syntax: str
) -> None:
    con = store()
    add_serials(con, [unit("1"), unit("2")])
    classes = [
        "urn:epc:class:lgtin:0614141.012345.LOT1",
        "urn:epc:idpat:sgtin:0614141.012345.*",
        f"https://id.gs1.org/01/{UNIT_GTIN}/10/LOT1",
    ]
    doc = Doc(
        [
            Ev(biz_step="commissioning", epcs=[*classes, unit("1")], biz_location=LOC_A,
               quantities=classes),
            Ev("TransformationEvent", biz_step="commissioning", epcs=[unit("2")],
               quantities=classes, biz_location=LOC_A),
            Ev("AggregationEvent", biz_step="packing", parent=sscc(3), epcs=[unit("1")],
               quantities=classes, biz_location=LOC_A),
            Ev(action="OBSERVE", biz_step="shipping", epcs=[sscc(3)], quantities=classes,
               biz_location=LOC_A),
        ]
    )  # fmt: skip
    result = run(con, tmp_path, doc, syntax)
    rec = result.reconciliation
    assert rec["events_read"] == 4
    assert (rec["commissioned"], rec["shipped"], rec["ok"], rec["malformed_epc"]) == (2, 1, 3, 0)
    assert result.exceptions.height == 0


# ------------------------------------------------------------------------ decommissioning


@pytest.mark.parametrize("step", ["decommissioning", "destroying"])
@syntaxes
def test_decommissioning_in_every_syntax(tmp_path: Path, syntax: str, step: str) -> None:
    con = store()
    add_serials(con, [unit("1"), unit("2"), unit("3")])
    doc = Doc(
        [
            Ev("AggregationEvent", biz_step="packing", parent=sscc(2), epcs=[unit("1"), unit("2")],
               biz_location=LOC_A),
            Ev(action="DELETE", biz_step=step, epcs=[sscc(2), unit("3"), unit("ghost")],
               biz_location=LOC_A),
        ]
    )  # fmt: skip
    result = run(con, tmp_path, doc, syntax)
    rec = result.reconciliation
    assert (rec["decommissioned"], rec["ok"], rec["unknown_serial"]) == (4, 3, 1)
    assert exceptions(result) == [("decommissioning", "ghost", "UNKNOWN_SERIAL")]
    assert {s for s, v in state(con).items() if v[2]} == {"1", "2", "3"}


# ----------------------------------------------------------------------------------- sender


@syntaxes
def test_the_document_sender_as_a_bare_sgln(tmp_path: Path, syntax: str) -> None:
    """The SBDH sender (XML) or the JSON-LD `sender`, written bare, after no shipping source."""
    con = store()
    add_serials(con, [unit("1")], "B")
    doc = Doc([Ev(action="OBSERVE", biz_step="receiving", epcs=[unit("1")])], sender=SGLN_B)
    result = run(con, tmp_path, doc, syntax)
    assert result.sender_cmo_id == "B"
    # a bare SGLN of no CMO, then a readPoint of none: quarantined, both candidates named
    doc = Doc([Ev(action="OBSERVE", biz_step="receiving", epcs=[unit("1")],
                  read_point="urn:epc:id:sgln:0614141.00077.0")], sender="0614141.00066.0")  # fmt: skip
    result = run(con, tmp_path, doc, syntax, "shipping_2")
    reason = result.quarantine_reason or ""
    assert result.sender_cmo_id is None and "matches no CMO" in reason, reason
    assert "0614141.00066.0" in reason and "0614141.00077.0" in reason, reason
    assert reason.index("0614141.00066.0") < reason.index("0614141.00077.0"), reason
    assert state(con)["1"] == (False, False, False, None)


@syntaxes
def test_a_gln_sender(tmp_path: Path, syntax: str) -> None:
    """`Authority="GLN"` in the SBDH; a 13-digit `sender` in JSON-LD: CMO B's sgln
    0614141.00009.0 has extension 0 and the GLN's first 12 digits."""
    con = store()
    doc = Doc([Ev(action="OBSERVE", biz_step="receiving", epcs=[unit("1")],
                  read_point="urn:epc:id:sgln:0358716.0.0")], sender="0614141000098",
              authority="GLN")  # fmt: skip
    result = run(con, tmp_path, doc, syntax)
    assert result.sender_cmo_id == "B"
    doc.sender = "0614141000097"  # a wrong check digit
    result = run(con, tmp_path, doc, syntax, "shipping_2")
    assert result.sender_cmo_id is None
    assert "urn:epc:id:sgln:0358716.0.0" in (result.quarantine_reason or "")
    assert "'0614141000097' is neither an SGLN nor a GLN" in (result.quarantine_reason or "")


@syntaxes
def test_the_shipping_source_comes_before_the_document_sender(tmp_path: Path, syntax: str) -> None:
    con = store()
    doc = Doc(
        [Ev(action="OBSERVE", biz_step="shipping", epcs=[unit("1")],
            sources=[("location", f"urn:epc:id:sgln:{SGLN_B}")])],
        sender=SGLN_A,
    )  # fmt: skip
    assert run(con, tmp_path, doc, syntax).sender_cmo_id == "B"


def test_an_unknown_element_of_a_1_2_extension_wrapper_is_a_skipped_event(tmp_path: Path) -> None:
    """EPCIS 1.2 `<EventList><extension>`: a TransformationEvent, an element of another
    namespace and a nested wrapper's element are all skipped events; an event after them
    is read."""
    con = store()
    add_serials(con, [unit("1")])
    xml = (
        '<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1" xmlns:x="urn:x">'
        "<EPCISBody><EventList>"
        "<extension><x:SensorEvent><x:value>3</x:value></x:SensorEvent>"
        "<extension><x:FutureEvent/></extension></extension>"
        "<ObjectEvent><epcList><epc>" + unit("1") + "</epc></epcList><action>ADD</action>"
        "<bizStep>commissioning</bizStep><bizLocation><id>" + LOC_A + "</id></bizLocation>"
        "</ObjectEvent><extension><x:LateEvent/></extension>"
        "</EventList></EPCISBody></epcis:EPCISDocument>"
    )
    path = tmp_path / "shipping_w.xml"
    path.write_text(xml, encoding="utf-8")
    info = stage_document(con, path)
    assert (info.events_read, info.events_skipped) == (1, 3)
    result = reconcile_document(con, info, CTX.for_file(path.name))
    assert (result.reconciliation["events_skipped"], result.reconciliation["ok"]) == (3, 1)


# ------------------------------------------------------------------ the same in every syntax

_SERIALS = [unit(f"S{i}") for i in range(8)] + [unit("C0", "512345"), unit("C1", "512345")]
_EPC = st.sampled_from(
    [
        *_SERIALS,
        unit("ghost"),
        sscc(1),
        sscc(2),
        "urn:epc:id:sgtin:0614141.0123.1",
        dl("S1"),
        dl("S5"),
    ]
)
_LOT = st.sampled_from([None, "L1", "L2"])


@st.composite
def documents(draw: st.DrawFn) -> Doc:
    events = []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["commission", "transform", "pack", "unpack", "ship",
                                     "decommission", "receive", "skip"]))  # fmt: skip
        epcs = draw(st.lists(_EPC, min_size=0, max_size=4))
        where = draw(st.sampled_from([LOC_A, None]))
        if kind == "commission":
            ev = Ev(biz_step="commissioning", epcs=epcs, biz_location=where, lot=draw(_LOT),
                    expiry=draw(st.sampled_from([None, "2027-01-31", "270100", "bad"])),
                    lot_source=draw(st.sampled_from(LOT_SOURCES)),
                    expiry_source=draw(st.sampled_from(LOT_SOURCES)))  # fmt: skip
        elif kind == "transform":
            ev = Ev("TransformationEvent", biz_step="commissioning", epcs=epcs,
                    inputs=draw(st.lists(_EPC, max_size=2)), read_point=where, lot=draw(_LOT))  # fmt: skip
        elif kind in ("pack", "unpack"):
            ev = Ev("AggregationEvent", action="ADD" if kind == "pack" else "DELETE",
                    biz_step="packing", parent=draw(st.sampled_from([sscc(1), sscc(2), _SERIALS[8]])),
                    epcs=epcs, biz_location=where)  # fmt: skip
        elif kind == "ship":
            ev = Ev(action="OBSERVE", biz_step="shipping", epcs=epcs, read_point=where,
                    sources=[("owning_party", LOC_A)] if draw(st.booleans()) else [])  # fmt: skip
        elif kind == "decommission":
            ev = Ev(action="DELETE", biz_step=draw(st.sampled_from(["decommissioning", "destroying"])),
                    epcs=epcs, biz_location=where)  # fmt: skip
        elif kind == "receive":
            ev = Ev(action="OBSERVE", biz_step="receiving", epcs=epcs, read_point=where)
        else:
            ev = Ev("TransformationEvent", biz_step="repackaging", epcs=epcs, read_point=where)
        events.append(ev)
    return Doc(events, sender=draw(st.sampled_from([None, SGLN_A])),
               cbv_form=draw(st.sampled_from(CBV_FORMS)))  # fmt: skip


def _reports(con: duckdb.DuckDBPyConnection, result: ShippingResult) -> dict[str, object]:
    rec = dict(result.reconciliation)
    rec.pop("file")
    exc = result.exceptions.drop("file").sort(pl.all()).to_dicts()
    lots = lot_reconciliation(con)
    LotReconciliationReport.validate(lots)
    return {
        "reason": result.quarantine_reason,
        "reconciliation": rec,
        "exceptions": exc,
        "lots": lots.to_dicts(),
        "state": state(con),
        "expiry": expiries(con),
        "links": con.sql("SELECT child, parent FROM shipping_hierarchy ORDER BY ALL").fetchall(),
    }


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=documents())
def test_one_document_in_three_syntaxes_gives_identical_reports(tmp_path: Path, doc: Doc) -> None:
    """EPCIS 1.2 XML, 2.0 XML and 2.0 JSON-LD (both JSON-LD readers): the same
    reconciliation, exceptions, lots, serial state and stored hierarchy."""
    seen = []
    for syntax in SYNTAXES:
        con = store()
        add_serials(con, _SERIALS[:6] + _SERIALS[8:], "A")
        add_serials(con, _SERIALS[6:7], "B")
        add_serials(con, _SERIALS[7:8], None)
        result = run(con, tmp_path, doc, syntax, f"shipping_{syntax}")
        seen.append(_reports(con, result))
    assert all(other == seen[0] for other in seen[1:])
