"""The streaming EPCIS parser (SPEC §6): fixture facts, EPCIS 1.2/2.0, skipped events, hardening."""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import resource
import sys
import threading
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from connectors import epcis, epcis_stage
from connectors.epcis import EpcisRejected, stage_document
from schemas.shipping import STAGE_EPCS, STAGE_EVENTS, STAGE_PARTIES, DocumentInfo, SourceParty
from transforms.epc import parse_epc
from transforms.shipping import sender_candidates

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "epcis"


def _expected() -> dict[str, dict]:
    path = FIXTURES / "EXPECTED.json"
    if not path.exists():
        pytest.skip(
            "../shared/fixtures/epcis is not on this machine (the real EPCIS documents are read from there, never copied)"
        )
    return json.loads(path.read_text(encoding="utf-8"))["files"]


def _xml_fixtures() -> list[str]:
    path = FIXTURES / "EXPECTED.json"
    if not path.exists():
        return []
    files = json.loads(path.read_text(encoding="utf-8"))["files"]
    return sorted(name for name, facts in files.items() if facts["format"] == "xml")


def _stage(path: Path, batch_size: int = 100_000) -> tuple[duckdb.DuckDBPyConnection, DocumentInfo]:
    con = duckdb.connect()
    return con, stage_document(con, path, batch_size=batch_size)


def test_the_real_documents_of_expected_json_are_all_there() -> None:
    """The fixture tests are parametrised by EXPECTED.json: without the folder they would
    not run at all, so its absence fails here (11 XML and 3 JSON-LD documents)."""
    files = _expected()
    assert Counter(facts["format"] for facts in files.values()) == {"xml": 11, "jsonld": 3}
    assert all((FIXTURES / name).is_file() for name in files)
    assert set(_xml_fixtures()) < set(files)


@pytest.mark.parametrize("name", _xml_fixtures())
def test_fixture_facts_are_reproduced(name: str) -> None:
    """Events per type/action/bizStep, SGTINs, SSCCs, aggregation map, ILMD, shipping parties, SBDH."""
    facts = _expected()[name]
    con, doc = _stage(FIXTURES / name)

    assert doc.namespace == facts["document"]["namespace"]
    assert doc.schema_version == facts["document"]["schemaVersion"]
    assert doc.events_by_type == facts["events_by_type"]
    assert doc.events_read + doc.events_skipped == facts["event_count"]

    events = con.sql(
        f"SELECT event_index, event_type, action, biz_step, parent_id, read_point, biz_location, "
        f"lot, expiry FROM {STAGE_EVENTS} ORDER BY event_index"
    ).fetchall()
    assert Counter(f"{t}|{a}|{b}" for _, t, a, b, *_ in events) == Counter(
        facts["events_by_type_action_bizstep"]
    )

    epcs = con.sql(f"SELECT event_index, trim(epc) FROM {STAGE_EPCS} ORDER BY ALL").fetchall()
    identifiers = {e for _, e in epcs} | {
        p.strip() for *_, p, _, _, _, _ in [r[:5] + r[5:] for r in events] if p
    }
    identifiers |= {r[4].strip() for r in events if r[4]}
    assert (
        sorted(i for i in identifiers if i.startswith("urn:epc:id:sgtin:"))
        == facts["sgtin"]["uris"]
    )
    assert (
        sorted(i for i in identifiers if i.startswith("urn:epc:id:sscc:")) == facts["sscc"]["uris"]
    )

    aggregation = facts.get("aggregation")
    if aggregation:
        children: dict[str, set[str]] = {}
        raw_links = 0
        by_event = {r[0]: r for r in events}
        for index, epc in epcs:
            event = by_event.get(index)
            if event and event[1] == "AggregationEvent" and event[2] in ("ADD", "OBSERVE"):
                children.setdefault(event[4].strip(), set()).add(epc)
                raw_links += 1
        assert {p: sorted(c) for p, c in children.items()} == aggregation["parent_to_children"]
        assert raw_links == aggregation["raw_child_link_count"]

    lot_events = [r for r in events if r[7] or r[8]]
    expected_ilmd = facts.get("ilmd") or []
    assert len(lot_events) == len(expected_ilmd)
    for got, want in zip(lot_events, expected_ilmd, strict=True):
        lots = [v for k, v in want.items() if k.endswith("}lotNumber")]
        expiries = [v for k, v in want.items() if k.endswith("}itemExpirationDate")]
        assert (got[7], got[8]) == (lots[0], expiries[0])
        assert sum(1 for i, _ in epcs if i == got[0]) == want["epc_count"]

    for ship in facts.get("shipping_events") or []:
        index = ship["event_index"] + 1
        row = next(r for r in events if r[0] == index)
        assert row[3] == "shipping" and row[2] == ship["action"]
        assert [e for i, e in epcs if i == index] == sorted(ship["top_level_epcs"])
        assert row[5] == ship["readPoint"] and row[6] == ship["bizLocation"]
        parties = con.sql(
            f"SELECT role, type, id FROM {STAGE_PARTIES} WHERE event_index = ? ORDER BY rowid",
            params=[index],
        ).fetchall()
        assert [(t, i) for r, t, i in parties if r == "source"] == [
            (s["type"], s["id"]) for s in ship["sources"]
        ]
        assert [(t, i) for r, t, i in parties if r == "destination"] == [
            (d["type"], d["id"]) for d in ship["destinations"]
        ]

    senders = facts["header"].get("sender") or []
    assert doc.sbdh_sender == (senders[0]["id"] if senders else None)


def test_batches_do_not_change_what_is_staged() -> None:
    """Flushing every 7 EPCs gives the same rows (and event indexes) as one batch."""
    name = "rmagee_quartet_tracelink/bitter-waterfall.xml"
    _expected()
    rows = []
    for batch in (7, 100_000):
        con, doc = _stage(FIXTURES / name, batch_size=batch)
        rows.append(con.sql(f"SELECT event_index, epc FROM {STAGE_EPCS} ORDER BY ALL").fetchall())
        assert doc.epcs_staged == len(rows[-1]) == 117
    assert rows[0] == rows[1]
    assert len({i for i, _ in rows[0]}) == 32


def test_sender_candidates_keep_the_order_of_section_6() -> None:
    name = "openepcis_openepcis-test-resources/1.2-xml/GS1_US_Pharma_Example_2_2_1_1.xml"
    _expected()
    _, doc = _stage(FIXTURES / name)
    assert [c.text for c in sender_candidates(doc)] == [
        "urn:epc:id:sgln:030001.111111.0",  # shipping source owning_party
        "urn:epc:id:sgln:030001.111121.0",  # shipping source location (also bizLocation later)
    ]  # (the SBDH sender, Authority="GS1", is the first again)
    assert doc.sbdh_sender_authority == "GS1"


def test_tracelinks_sbdh_gln_is_a_candidate_when_its_check_digit_is_right() -> None:
    """`<Identifier Authority="GLN">`: 0358716000006 is a GLN; 7777778888342 (check digit 2,
    not 7) is not, so only the events' locations remain."""
    _expected()
    _, doc = _stage(FIXTURES / "rmagee_quartet_tracelink/tracelink-epcis.xml")
    assert (doc.sbdh_sender, doc.sbdh_sender_authority) == ("0358716000006", "GLN")
    assert sender_candidates(doc)[0] == ("0358716000006", True)
    _, doc = _stage(FIXTURES / "rmagee_quartet_tracelink/tracelink-epcis-no-bs.xml")
    assert doc.sbdh_sender == "7777778888342"
    assert sender_candidates(doc) == [("urn:epc:id:sgln:0085412.00305.0", False)]


EPCIS2 = """<?xml version="1.0" encoding="UTF-8"?>
<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:2" xmlns:gs1="https://gs1.org/voc/"
    schemaVersion="2.0" creationDate="2024-01-01T00:00:00Z">
  <EPCISBody><EventList>
    <ObjectEvent>
      <eventTime>2024-01-01T00:00:00Z</eventTime><eventTimeZoneOffset>+00:00</eventTimeZoneOffset>
      <epcList><epc>urn:epc:id:sgtin:0614141.107346.2017</epc></epcList>
      <action>ADD</action><bizStep>commissioning</bizStep>
      <bizLocation><id>urn:epc:id:sgln:0614141.00001.0</id></bizLocation>
      <ilmd><gs1:lotNumber> L1 </gs1:lotNumber><gs1:itemExpirationDate>2026-01-31</gs1:itemExpirationDate></ilmd>
    </ObjectEvent>
    <AssociationEvent><eventTime>2024-01-01T00:00:00Z</eventTime><eventTimeZoneOffset>+00:00</eventTimeZoneOffset>
      <parentID>urn:epc:id:grai:4012345.55555.987</parentID><childEPCs><epc>urn:epc:id:sgtin:0614141.107346.9</epc></childEPCs>
      <action>ADD</action></AssociationEvent>
    <ObjectEvent>
      <eventTime>2024-01-02T00:00:00Z</eventTime><eventTimeZoneOffset>+00:00</eventTimeZoneOffset>
      <epcList><epc>urn:epc:id:sgtin:0614141.107346.2017</epc></epcList>
      <action>OBSERVE</action><bizStep>https://ref.gs1.org/cbv/BizStep-shipping</bizStep>
      <readPoint><id>urn:epc:id:sgln:0614141.00001.0</id></readPoint>
      <sourceList><source type="owning_party">urn:epc:id:sgln:0614141.00002.0</source></sourceList>
      <destinationList><destination type="location">urn:epc:id:sgln:0012345.11111.0</destination></destinationList>
    </ObjectEvent>
  </EventList></EPCISBody>
</epcis:EPCISDocument>
"""


def test_epcis_2_0_namespace_bare_cbv_words_and_direct_lists(tmp_path: Path) -> None:
    """2.0: bizStep as a bare word or GS1 URL, ilmd and source lists directly under the event."""
    path = tmp_path / "shipping_2.xml"
    path.write_text(EPCIS2, encoding="utf-8")
    con, doc = _stage(path)
    assert doc.epcis_version == "2.0"
    assert (doc.events_read, doc.events_skipped) == (2, 1)
    events = con.sql(
        f"SELECT event_index, action, biz_step, lot, expiry FROM {STAGE_EVENTS} ORDER BY 1"
    ).fetchall()
    assert events == [
        (1, "ADD", "commissioning", "L1", "2026-01-31"),
        (3, "OBSERVE", "shipping", None, None),
    ]
    assert doc.sources == [
        SourceParty("ObjectEvent", "shipping", "owning_party", "urn:epc:id:sgln:0614141.00002.0")
    ]
    assert sender_candidates(doc)[0].text == "urn:epc:id:sgln:0614141.00002.0"


def test_event_rows_are_staged_with_their_kind_expiry_date_and_parsed_parent(
    tmp_path: Path,
) -> None:
    """What the rules derive from an event row is derived as it is staged."""
    path = tmp_path / "shipping_derived.xml"
    sscc = "urn:epc:id:sscc:0614141.1234567890"
    path.write_text(
        "<epcis:EPCISDocument xmlns:epcis='urn:epcglobal:epcis:xsd:1'><EPCISBody><EventList>"
        "<ObjectEvent><epcList/><action>ADD</action><bizStep>commissioning</bizStep>"
        "<extension><ilmd><lotNumber>L</lotNumber><itemExpirationDate>2027-06-30"
        "</itemExpirationDate></ilmd></extension></ObjectEvent>"
        "<ObjectEvent><epcList/><action>ADD</action><bizStep>commissioning</bizStep>"
        "<extension><ilmd><itemExpirationDate>30.06.2027</itemExpirationDate></ilmd>"
        "</extension></ObjectEvent>"
        f"<AggregationEvent><parentID>{sscc}</parentID><childEPCs/><action>ADD</action>"
        "</AggregationEvent>"
        "<AggregationEvent><parentID>urn:epc:id:sscc:5099151.001900620</parentID>"
        "<childEPCs/><action>DELETE</action></AggregationEvent>"
        "<ObjectEvent><epcList/><action>OBSERVE</action><bizStep>shipping</bizStep>"
        "</ObjectEvent>"
        "<ObjectEvent><epcList/><action>OBSERVE</action><bizStep>receiving</bizStep>"
        "</ObjectEvent>"
        "</EventList></EPCISBody></epcis:EPCISDocument>",
        encoding="utf-8",
    )
    con, _ = _stage(path)
    rows = con.sql(
        f"""SELECT event_index, kind, expiry, expiry_date, parent_scheme,
            parent_key = md5_number('{parse_epc(sscc).sscc}')
        FROM {STAGE_EVENTS} ORDER BY event_index"""
    ).fetchall()
    assert rows == [
        (1, "commissioning", "2027-06-30", dt.date(2027, 6, 30), None, None),
        (2, "commissioning", "30.06.2027", None, None, None),
        (3, "aggregation", None, None, "sscc", True),
        (4, "aggregation", None, None, "malformed", False),
        (5, "shipping", None, None, None, None),
        (6, None, None, None, None, None),
    ]


def test_a_source_repeated_on_every_event_is_kept_once(tmp_path: Path) -> None:
    """What the sender rule keeps of the sources does not grow with the document."""
    event = (
        "<ObjectEvent><epcList/><action>OBSERVE</action><bizStep>shipping</bizStep>"
        "<extension><sourceList><source type='urn:epcglobal:cbv:sdt:owning_party'>"
        "urn:epc:id:sgln:0614141.00002.0</source></sourceList></extension></ObjectEvent>"
    )
    path = tmp_path / "shipping_sources.xml"
    path.write_text(
        "<epcis:EPCISDocument xmlns:epcis='urn:epcglobal:epcis:xsd:1'><EPCISBody><EventList>"
        + event * 50
        + "</EventList></EPCISBody></epcis:EPCISDocument>",
        encoding="utf-8",
    )
    con, doc = _stage(path)
    assert doc.sources == [
        SourceParty("ObjectEvent", "shipping", "owning_party", "urn:epc:id:sgln:0614141.00002.0")
    ]
    assert con.sql(f"SELECT count(*) FROM {STAGE_PARTIES}").fetchall() == [(50,)]


def test_a_pretty_printed_epc_with_line_breaks_and_tabs_is_read_trimmed(tmp_path: Path) -> None:
    """`<epc>` texts indented by a pretty printer (line breaks, tabs) are the same EPCs."""
    pretty = EPCIS2.replace(
        "<epc>urn:epc:id:sgtin:0614141.107346.2017</epc>",
        "<epc>\n\t\t urn:epc:id:sgtin:0614141.107346.2017\r\n\t</epc>",
    )
    path = tmp_path / "shipping_pretty.xml"
    path.write_text(pretty, encoding="utf-8")
    con, _ = _stage(path)
    staged = con.sql(f"SELECT DISTINCT epc, epc_scheme, serial FROM {STAGE_EPCS}").fetchall()
    assert ("urn:epc:id:sgtin:0614141.107346.2017", "sgtin", "2017") in staged
    assert all(scheme != "malformed" for _, scheme, _ in staged)


def test_values_around_comments_cdata_and_blank_lines_read_as_written_plainly(
    tmp_path: Path,
) -> None:
    """Blank text between elements is not kept in the tree; a value written with blanks
    around a comment or a CDATA section, or only blanks, reads as in the plain document."""
    noisy = (
        EPCIS2.replace("<action>ADD</action>", "<action>\n  <!-- c -->\n  ADD </action>")
        .replace(
            "<bizStep>commissioning</bizStep>", "<bizStep>  <![CDATA[commissioning]]>\n</bizStep>"
        )
        .replace(
            "<gs1:lotNumber> L1 </gs1:lotNumber>",
            "<gs1:lotNumber>\n\tL1<!-- x -->\n</gs1:lotNumber>",
        )
        .replace(
            "<epc>urn:epc:id:sgtin:0614141.107346.9</epc>",
            "<epc>  <!-- c -->  </epc>",
        )
        .replace(
            "<id>urn:epc:id:sgln:0614141.00001.0</id></readPoint>", "<id>\n \n</id></readPoint>"
        )
    )
    staged = {}
    for name, text in (("plain", EPCIS2), ("noisy", noisy)):
        path = tmp_path / f"shipping_{name}.xml"
        path.write_text(text, encoding="utf-8")
        con, _ = _stage(path)
        staged[name] = (
            con.sql(
                f"SELECT event_index, action, biz_step, read_point, lot, expiry "
                f"FROM {STAGE_EVENTS} ORDER BY 1"
            ).fetchall(),
            con.sql(f"SELECT event_index, epc FROM {STAGE_EPCS} ORDER BY ALL").fetchall(),
        )
    (plain_events, plain_epcs), (noisy_events, noisy_epcs) = staged["plain"], staged["noisy"]
    assert (
        noisy_events[0] == plain_events[0] == (1, "ADD", "commissioning", None, "L1", "2026-01-31")
    )
    # the shipping event's readPoint was only blanks: no readPoint
    assert plain_events[1][3] == "urn:epc:id:sgln:0614141.00001.0"
    assert noisy_events[1] == (3, "OBSERVE", "shipping", None, None, None)
    # an <epc> of only blanks (and a comment) is an empty EPC, kept in its place
    assert noisy_epcs == [(1, plain_epcs[0][1]), (2, ""), (3, plain_epcs[2][1])]


def test_other_event_types_are_counted_and_skipped_also_inside_extension(tmp_path: Path) -> None:
    """A 1.2 `<extension><TransformationEvent>` (not commissioning) and a QuantityEvent are
    skipped but keep their index."""
    body = """<?xml version="1.0"?>
<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1" schemaVersion="1.2" creationDate="2024-01-01T00:00:00Z">
 <EPCISBody><EventList>
  <QuantityEvent><eventTime>2024-01-01T00:00:00Z</eventTime><eventTimeZoneOffset>+00:00</eventTimeZoneOffset>
   <epcClass>urn:epc:idpat:sgtin:0614141.107346.*</epcClass><quantity>3</quantity></QuantityEvent>
  <extension><TransformationEvent><eventTime>2024-01-01T00:00:00Z</eventTime><eventTimeZoneOffset>+00:00</eventTimeZoneOffset>
   <inputEPCList><epc>urn:epc:id:sgtin:0614141.107346.1</epc></inputEPCList>
   <outputEPCList><epc>urn:epc:id:sgtin:0614141.107346.2</epc></outputEPCList></TransformationEvent></extension>
  <ObjectEvent><eventTime>2024-01-01T00:00:00Z</eventTime><eventTimeZoneOffset>+00:00</eventTimeZoneOffset>
   <epcList><epc>urn:epc:id:sgtin:0614141.107346.3</epc></epcList><action>OBSERVE</action>
   <bizStep>urn:epcglobal:cbv:bizstep:receiving</bizStep>
   <unknown:thing xmlns:unknown="urn:x"><epc>not read</epc></unknown:thing>
  </ObjectEvent>
 </EventList></EPCISBody>
</epcis:EPCISDocument>"""
    path = tmp_path / "shipping_skip.xml"
    path.write_text(body, encoding="utf-8")
    con, doc = _stage(path)
    assert doc.events_by_type == {"ObjectEvent": 1, "QuantityEvent": 1, "TransformationEvent": 1}
    assert (doc.events_read, doc.events_skipped) == (1, 2)
    assert con.sql(f"SELECT event_index FROM {STAGE_EVENTS}").fetchall() == [(3,)]
    staged = con.sql(f"SELECT event_index, epc FROM {STAGE_EPCS} ORDER BY ALL").fetchall()
    # the skipped event's outputs carry its index (2), so no rule ever reads them as event
    # 3's; its inputs are never staged
    assert staged == [
        (2, "urn:epc:id:sgtin:0614141.107346.2"), (3, "urn:epc:id:sgtin:0614141.107346.3")
    ]  # fmt: skip


def test_a_long_epc_list_is_harvested_while_read(tmp_path: Path) -> None:
    """One event with 60,000 EPCs (3 MB, several parser chunks): every EPC once, with its event."""
    uris = [f"urn:epc:id:sgtin:0614141.107346.{i}" for i in range(60_000)]
    body = (
        '<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1" schemaVersion="1.2" '
        'creationDate="2024-01-01T00:00:00Z"><EPCISBody><EventList><ObjectEvent>'
        "<epcList>" + "".join(f"<epc>{u}</epc>" for u in uris) + "</epcList>"
        "<action>OBSERVE</action><bizStep>shipping</bizStep>"
        "</ObjectEvent></EventList></EPCISBody></epcis:EPCISDocument>"
    )
    path = tmp_path / "shipping_long.xml"
    path.write_text(body, encoding="utf-8")
    con, doc = _stage(path, batch_size=1000)
    assert doc.epcs_staged == 60_000
    staged = con.sql(f"SELECT event_index, epc FROM {STAGE_EPCS} ORDER BY rowid").fetchall()
    # every EPC with its event, though most were staged before the parser reached the
    # event's end
    assert {i for i, _ in staged} == {1}
    assert sorted(e for _, e in staged) == sorted(uris)
    assert con.sql(f"SELECT event_index, biz_step FROM {STAGE_EVENTS}").fetchall() == [
        (1, "shipping")
    ]


def test_a_long_child_list_belongs_to_its_aggregation_event(tmp_path: Path) -> None:
    children = [f"urn:epc:id:sgtin:0614141.107346.{i}" for i in range(30_000)]
    body = (
        '<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1" schemaVersion="1.2" '
        'creationDate="2024-01-01T00:00:00Z"><EPCISBody><EventList>'
        "<ObjectEvent><epcList><epc>urn:epc:id:sgtin:0614141.107346.x</epc></epcList>"
        "<action>ADD</action><bizStep>commissioning</bizStep></ObjectEvent>"
        "<AggregationEvent><parentID> urn:epc:id:sscc:0614141.1234567890 </parentID><childEPCs>"
        + "".join(f"<epc>{u}</epc>" for u in children)
        + "</childEPCs><action>ADD</action><bizStep>packing</bizStep></AggregationEvent>"
        "</EventList></EPCISBody></epcis:EPCISDocument>"
    )
    path = tmp_path / "shipping_pack.xml"
    path.write_text(body, encoding="utf-8")
    con, _ = _stage(path, batch_size=1000)
    rows = con.sql(
        f"""SELECT s.event_index, e.event_type, trim(e.parent_id), count(*)
        FROM {STAGE_EPCS} s JOIN {STAGE_EVENTS} e USING (event_index)
        GROUP BY ALL ORDER BY 1"""
    ).fetchall()
    assert rows == [
        (1, "ObjectEvent", None, 1),
        (2, "AggregationEvent", "urn:epc:id:sscc:0614141.1234567890", 30_000),
    ]


# ------------------------------------------------------------------------------- hardening


def _rejected(path: Path) -> str:
    with pytest.raises(EpcisRejected) as info:
        _stage(path)
    return info.value.reason


@pytest.mark.timeout(20)
def test_xxe_is_rejected_without_reading_the_entity(tmp_path: Path) -> None:
    """An external entity naming a FIFO: opening it would block, so a pass proves it was never read."""
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)
    for uri in (fifo.as_uri(), "http://127.0.0.1:9/x"):
        path = tmp_path / "shipping_xxe.xml"
        path.write_text(
            f'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "{uri}">]>\n'
            '<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1"><EPCISBody><EventList>'
            "<ObjectEvent><epcList><epc>&xxe;</epc></epcList></ObjectEvent>"
            "</EventList></EPCISBody></epcis:EPCISDocument>",
            encoding="utf-8",
        )
        assert "DOCTYPE" in _rejected(path)


@pytest.mark.timeout(20)
def test_billion_laughs_is_rejected_without_memory_blow_up(tmp_path: Path) -> None:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    ]
    path = tmp_path / "shipping_lol.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE d [' + "".join(entities) + "]>\n"
        '<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1"><EPCISBody><EventList>'
        "<ObjectEvent><epcList><epc>&lol9;</epc></epcList></ObjectEvent>"
        "</EventList></EPCISBody></epcis:EPCISDocument>",
        encoding="utf-8",
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert "DOCTYPE" in _rejected(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_a_comment_that_mentions_a_doctype_is_no_doctype(tmp_path: Path) -> None:
    """Only a real DOCTYPE quarantines: a comment or processing instruction naming one is text."""
    path = tmp_path / "shipping_comment.xml"
    path.write_text(
        EPCIS2.replace(
            "<epcis:EPCISDocument",
            "<!-- no <!DOCTYPE here --><?note <!DOCTYPE?>\n<epcis:EPCISDocument",
            1,
        ),
        encoding="utf-8",
    )
    _, doc = _stage(path)
    assert doc.events_read == 2


def test_a_doctype_after_a_long_prolog_is_still_found(tmp_path: Path) -> None:
    """The DOCTYPE check is the parser's, not only a look at the first bytes."""
    path = tmp_path / "shipping_late_doctype.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<!--' + "x" * 200_000 + "-->\n<!DOCTYPE d>\n"
        '<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1"/>',
        encoding="utf-8",
    )
    assert "DOCTYPE" in _rejected(path)


def _xinclude_document(namespace: str, include: bool, padding: int = 0) -> str:
    """A document with XInclude elements in its EventList, an extension wrapper, an EPC
    list, an ILMD, on an event and in the SBDH; each has a fallback that would add an
    event, an EPC, a lot or a skipped event.  `include=False`: the same without them.
    `padding` events inside the EventList's fallback make it span many parser chunks."""
    xi = "http://www.w3.org/2001/XInclude"

    def inc(href: str, fallback: str, parse: str = "xml") -> str:
        if not include:
            return ""
        return (
            f'<xi:include href="{href}" parse="{parse}"><xi:fallback>{fallback}'
            "</xi:fallback></xi:include>"
        )

    def commissioning(serial: str, inner: str = "", ilmd: str = "") -> str:
        return (
            "<ObjectEvent><eventTime>2024-05-01T00:00:00Z</eventTime>"
            "<eventTimeZoneOffset>+00:00</eventTimeZoneOffset>"
            f"<epcList><epc>urn:epc:id:sgtin:0614141.012345.{serial}</epc>{inner}</epcList>"
            "<action>ADD</action><bizStep>urn:epcglobal:cbv:bizstep:commissioning</bizStep>"
            f"{ilmd}</ObjectEvent>"
        )

    sgln = "urn:epc:id:sgln:0614141.00001.0"
    ilmd = "<ilmd>" + inc("lot.xml", "<lotNumber>FALLBACK</lotNumber>") + "</ilmd>"
    if namespace.endswith(":1"):
        ilmd = f"<extension>{ilmd}</extension>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<epcis:EPCISDocument xmlns:epcis="{namespace}" xmlns:xi="{xi}" '
        'xmlns:sbdh="http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader" '
        'schemaVersion="1.2"><EPCISHeader><sbdh:StandardBusinessDocumentHeader>'
        "<sbdh:HeaderVersion>1.0</sbdh:HeaderVersion><sbdh:Sender>"
        + inc("sender.xml", f'<sbdh:Identifier Authority="SGLN">{sgln}</sbdh:Identifier>')
        + "</sbdh:Sender></sbdh:StandardBusinessDocumentHeader></EPCISHeader>"
        "<EPCISBody><EventList>"
        + inc("events.xml", commissioning("INCLUDED") + commissioning("P") * padding)
        + commissioning(
            "1",
            inner=inc("epcs.txt", "urn:epc:id:sgtin:0614141.012345.TEXT", "text"),
            ilmd=ilmd,
        )
        + inc("more.xml", "<QuantityEvent/>")
        + "<extension>"
        + inc("wrapped.xml", "<QuantityEvent/><Other/>")
        + "</extension>"
        + commissioning("2")
        + "</EventList></EPCISBody></epcis:EPCISDocument>"
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("namespace", ["urn:epcglobal:epcis:xsd:1", "urn:epcglobal:epcis:xsd:2"])
@pytest.mark.parametrize("padding", [0, 20_000])
def test_an_xinclude_is_never_followed_and_read_as_if_it_were_not_there(
    tmp_path: Path, namespace: str, padding: int
) -> None:
    """SPEC §6 hardening: every include names a file that exists (its events, EPCs, lot
    and sender would count if followed) or a FIFO (following it would block); neither
    the include nor its fallback changes what is staged — with 20,000 events in a
    fallback, across many chunks of the streaming reader, too."""
    included = (
        "<ObjectEvent><epcList><epc>urn:epc:id:sgtin:0614141.012345.FILE</epc></epcList>"
        "<action>ADD</action><bizStep>commissioning</bizStep></ObjectEvent>"
    )
    for name in ("events.xml", "more.xml", "wrapped.xml"):
        (tmp_path / name).write_text(included, encoding="utf-8")
    (tmp_path / "lot.xml").write_text("<lotNumber>FILE</lotNumber>", encoding="utf-8")
    (tmp_path / "epcs.txt").write_text("urn:epc:id:sgtin:0614141.012345.FILE", encoding="utf-8")
    os.mkfifo(tmp_path / "sender.xml")
    staged = []
    for include in (True, False):
        path = tmp_path / f"shipping_xi_{include}.xml"
        path.write_text(_xinclude_document(namespace, include, padding), encoding="utf-8")
        con, doc = _stage(path)
        events = con.sql(
            f"SELECT event_index, event_type, biz_step, lot FROM {STAGE_EVENTS} ORDER BY 1"
        ).fetchall()
        epcs = con.sql(f"SELECT event_index, epc FROM {STAGE_EPCS} ORDER BY 1, 2").fetchall()
        staged.append((doc.events_read, doc.events_skipped, doc.sbdh_sender, events, epcs))
    assert staged[0] == staged[1]
    assert staged[0] == (
        2,
        0,
        None,
        [(1, "ObjectEvent", "commissioning", None), (2, "ObjectEvent", "commissioning", None)],
        [(1, "urn:epc:id:sgtin:0614141.012345.1"), (2, "urn:epc:id:sgtin:0614141.012345.2")],
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "no XML element"),
        (
            "<epcis:EPCISDocument xmlns:epcis='urn:epcglobal:epcis:xsd:1'><EPCISBody>",
            "not well-formed",
        ),
        ("<EPCISDocument><EPCISBody/></EPCISDocument>", "not an EPCIS document"),
        ("<a:EPCISDocument xmlns:a='urn:other'/>", "not an EPCIS document"),
        (
            "<epcis:EPCISDocument xmlns:epcis='urn:epcglobal:epcis:xsd:1'><x>&undefined;</x>"
            "</epcis:EPCISDocument>",
            "uses the entity &undefined; at line 1, which it does not define",
        ),
    ],
)
def test_broken_or_foreign_documents_are_rejected(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "shipping_bad.xml"
    path.write_text(text, encoding="utf-8")
    assert words in _rejected(path)


def test_16_digit_sscc_is_staged_and_identified_as_malformed() -> None:
    _expected()
    con, _ = _stage(FIXTURES / "rmagee_quartet_tracelink/1-b.xml")
    parents = [
        r[0].strip()
        for r in con.sql(
            f"SELECT parent_id FROM {STAGE_EVENTS} WHERE parent_id IS NOT NULL"
        ).fetchall()
    ]
    assert parents == ["urn:epc:id:sscc:5099151.001900620"]
    assert parse_epc(parents[0]).malformed


def test_parsing_runs_in_a_worker_thread() -> None:
    """The flow may run files off the main thread: nothing in the parser depends on it."""
    _expected()
    out: list[DocumentInfo] = []
    worker = threading.Thread(
        target=lambda: out.append(_stage(FIXTURES / "gs1_EPCIS/1.2-xml/ObjectEvent.xml")[1])
    )
    worker.start()
    worker.join()
    assert out and out[0].events_read == 2


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_paused_while_reading_and_restored(
    tmp_path: Path, enabled: bool
) -> None:
    """Paused while the document is read; as it was afterwards, also after a rejection."""
    good = tmp_path / "shipping_good.xml"
    good.write_text(
        "<epcis:EPCISDocument xmlns:epcis='urn:epcglobal:epcis:xsd:1'><EPCISBody><EventList>"
        "<ObjectEvent><epcList><epc>urn:epc:id:sgtin:0614141.107346.1</epc></epcList>"
        "<action>ADD</action></ObjectEvent></EventList></EPCISBody></epcis:EPCISDocument>",
        encoding="utf-8",
    )
    bad = tmp_path / "shipping_bad.xml"
    bad.write_text(
        "<epcis:EPCISDocument xmlns:epcis='urn:epcglobal:epcis:xsd:1'><EPCISBody>",
        encoding="utf-8",
    )
    seen: list[bool] = []
    original = epcis._read_event

    def spy(*args: object) -> None:
        seen.append(gc.isenabled())
        intervals.append(sys.getswitchinterval())
        original(*args)  # type: ignore[arg-type]

    was, interval = gc.isenabled(), sys.getswitchinterval()
    intervals: list[float] = []
    try:
        (gc.enable if enabled else gc.disable)()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(epcis, "_read_event", spy)
            stage_document(duckdb.connect(), good)
            assert seen == [False]
            # the thread switch interval too (the writer thread's waits for the GIL)
            assert intervals == [pytest.approx(epcis_stage._SWITCH_INTERVAL)]
            assert intervals[0] < interval
            assert gc.isenabled() is enabled and sys.getswitchinterval() == interval
            with pytest.raises(EpcisRejected):
                stage_document(duckdb.connect(), bad)
            assert gc.isenabled() is enabled and sys.getswitchinterval() == interval
    finally:
        (gc.enable if was else gc.disable)()
