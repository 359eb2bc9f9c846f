"""The EPCIS 2.0 JSON-LD reader (SPEC §6): GS1's examples and the event-hash generator's
normalisation example reproduce the facts of ../shared/fixtures/epcis/EXPECTED.json;
the same example in three syntaxes stages the same events; keys by local name."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from connectors.epcis import EpcisRejected, stage_document
from connectors.store import memory_connection
from schemas.shipping import STAGE_EPCS, STAGE_EVENTS, STAGE_PARTIES, DocumentInfo
from transforms.context import RunContext
from transforms.epc import parse_epc
from transforms.shipping import reconcile_document, sender_candidates

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "epcis"


def _files() -> dict[str, dict]:
    path = FIXTURES / "EXPECTED.json"
    if not path.exists():
        pytest.skip(
            "../shared/fixtures/epcis is not on this machine (the real EPCIS documents are read from there, never copied)"
        )
    return json.loads(path.read_text(encoding="utf-8"))["files"]


def _jsonld_fixtures() -> list[str]:
    path = FIXTURES / "EXPECTED.json"
    if not path.exists():
        return []
    files = json.loads(path.read_text(encoding="utf-8"))["files"]
    return sorted(name for name, facts in files.items() if facts["format"] == "jsonld")


def _stage(path: Path) -> tuple[duckdb.DuckDBPyConnection, DocumentInfo]:
    con = duckdb.connect()
    return con, stage_document(con, path)


@pytest.mark.parametrize("name", _jsonld_fixtures())
def test_json_ld_fixture_facts_are_reproduced(name: str) -> None:
    """Events per type/action/bizStep, SGTINs, SSCCs, aggregations, shipping events and
    their locations, the document-level sender."""
    facts = _files()[name]
    con, doc = _stage(FIXTURES / name)
    assert doc.syntax == "jsonld" and doc.epcis_version == "2.0"
    assert doc.schema_version == facts["document"]["schemaVersion"]
    assert doc.events_by_type == facts["events_by_type"]
    assert doc.events_read + doc.events_skipped == facts["event_count"]
    events = con.sql(
        f"""SELECT event_index, event_type, action, biz_step, parent_id, read_point,
            biz_location FROM {STAGE_EVENTS} ORDER BY event_index"""
    ).fetchall()
    assert Counter(f"{t}|{a}|{b}" for _, t, a, b, *_ in events) == Counter(
        facts["events_by_type_action_bizstep"]
    )
    epcs = con.sql(f"SELECT event_index, epc FROM {STAGE_EPCS} ORDER BY rowid").fetchall()
    identifiers = {e for _, e in epcs} | {r[4] for r in events if r[4]}
    assert (
        sorted(i for i in identifiers if i.startswith("urn:epc:id:sgtin:"))
        == facts["sgtin"]["uris"]
    )
    assert (
        sorted(i for i in identifiers if i.startswith("urn:epc:id:sscc:")) == facts["sscc"]["uris"]
    )
    for uri, sscc18 in facts["sscc"]["sscc18"].items():
        assert parse_epc(uri).sscc == sscc18
    aggregation = facts.get("aggregation")
    if aggregation:
        children: dict[str, list[str]] = {}
        for index, epc in epcs:
            event = next(r for r in events if r[0] == index)
            if event[1] == "AggregationEvent":
                children.setdefault(event[4], []).append(epc)
        assert {p: sorted(c) for p, c in children.items()} == aggregation["parent_to_children"]
    for ship in facts.get("shipping_events") or []:
        row = events[ship["event_index"]]
        assert (row[2], row[3]) == (ship["action"], "shipping")
        assert sorted(e for i, e in epcs if i == row[0]) == sorted(ship["top_level_epcs"])
        assert (row[5], row[6]) == (ship["readPoint"], ship["bizLocation"])
        parties = con.sql(
            f"SELECT role, type, id FROM {STAGE_PARTIES} WHERE event_index = ?", params=[row[0]]
        ).fetchall()
        assert [(t, i) for r, t, i in parties if r == "source"] == [
            (s["type"], s["id"]) for s in ship["sources"]
        ]
    assert doc.sbdh_sender == facts["header"].get("sender")


def test_the_normalisation_example_parses_every_key_type_alike() -> None:
    """epclist_normalisation.jsonld: percent-escaped serials, a 12-digit company prefix,
    other keys and class-level identifiers (ignored, not malformed)."""
    facts = _files()["RalphTro_epcis-event-hash-generator/2.0-jsonld/epclist_normalisation.jsonld"]
    con, _ = _stage(
        FIXTURES / "RalphTro_epcis-event-hash-generator/2.0-jsonld/epclist_normalisation.jsonld"
    )
    rows = con.sql(f"SELECT epc, epc_scheme, product_code, serial FROM {STAGE_EPCS}").fetchall()
    by_gtin = Counter(p for _, scheme, p, _ in rows if scheme == "sgtin")
    assert by_gtin == facts["sgtin"]["by_gtin"]
    for uri, note in facts["sgtin"]["serial_notes"].items():
        assert next(s for e, _, _, s in rows if e == uri) == note["serial_decoded"]
    others = {e for e, scheme, _, _ in rows if scheme == "other"}
    assert (
        set(facts["other_identifiers"])
        - {"urn:epc:id:sgln:4012345.00005.0", "urn:epc:id:sgln:4012345.00005.122"}
        == others
    )
    assert not [e for e, scheme, _, _ in rows if scheme == "malformed"]


@pytest.mark.parametrize("scenario", [1, 2])
def test_one_example_in_three_syntaxes_stages_the_same_events(scenario: int) -> None:
    """EXPECTED.json's scenarios: Example 9.6.1 and 9.6.3 in 1.2 XML, 2.0 XML and JSON-LD."""
    _files()
    names = json.loads((FIXTURES / "EXPECTED.json").read_text(encoding="utf-8"))["scenarios"][
        scenario
    ]["files"]
    staged = []
    for name in names:
        con, doc = _stage(FIXTURES / name)
        staged.append(
            (
                doc.events_read,
                con.sql(
                    f"""SELECT event_index, event_type, action, biz_step, parent_id, read_point,
                        biz_location, kind FROM {STAGE_EVENTS} ORDER BY ALL"""
                ).fetchall(),
                con.sql(f"SELECT event_index, epc FROM {STAGE_EPCS} ORDER BY ALL").fetchall(),
                con.sql(f"SELECT * FROM {STAGE_PARTIES} ORDER BY ALL").fetchall(),
            )
        )
    assert staged[0] == staged[1] == staged[2]


def test_gs1s_shipping_example_is_reconciled_with_its_document_sender() -> None:
    """Example 9.6.1 in JSON-LD: no shipping source, the pseudo-SBDH `sender` is the first
    candidate, before the readPoint."""
    path = (
        FIXTURES / "gs1_EPCIS/2.0-jsonld/Example_9.6.1-ObjectEvent-with-pseudo-SBDH-headers.jsonld"
    )
    _files()
    con = memory_connection()
    con.execute(
        "INSERT INTO cmos (cmo_id, cmo_name, sgln) VALUES ('GS', 'Sender', '0353579.00001.0')"
    )
    doc = stage_document(con, path)
    assert sender_candidates(doc)[0] == ("urn:epc:id:sgln:0353579.00001.0", False)
    result = reconcile_document(
        con, doc, RunContext("r", __import__("datetime").datetime(2024, 1, 1))
    )
    assert result.sender_cmo_id == "GS"
    rec = result.reconciliation
    assert (rec["events_read"], rec["shipped"], rec["unknown_serial"]) == (2, 2, 2)


def test_tracelinks_json_schema_is_json_but_not_an_epcis_document() -> None:
    _files()
    with pytest.raises(EpcisRejected) as caught:
        _stage(
            FIXTURES
            / "tracelink_code-samples/multienterprise-process-connect_canonicalSerializedShipmentNotice_v3.json"
        )
    assert caught.value.reason.startswith("not an EPCIS document: the JSON's type is 'object'")


# ------------------------------------------------------------------------ generated documents


def _write(tmp_path: Path, body: object, name: str = "shipping_k.jsonld") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def test_keys_match_by_local_name_after_any_prefix_and_in_any_order(tmp_path: Path) -> None:
    """`epcis:`-prefixed keys, `@type`, the type after the EPC list, nested ILMD."""
    body = {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "epcis:epcisBody": {
            "epcis:eventList": [
                {
                    "epcis:epcList": ["urn:epc:id:sgtin:0614141.107346.1"],
                    "epcis:ilmd": {
                        "cbvmda:lotNumber": "L1",
                        "x:nested": {"cbvmda:itemExpirationDate": "2027-01-31"},
                    },
                    "epcis:bizStep": "urn:epcglobal:cbv:bizstep:commissioning",
                    "epcis:action": "ADD",
                    "epcis:readPoint": {"epcis:id": "urn:epc:id:sgln:0614141.00001.0"},
                    "@type": "ObjectEvent",
                }
            ]
        },
        "@type": "EPCISDocument",
    }
    con, doc = _stage(_write(tmp_path, body))
    assert doc.events_by_type == {"ObjectEvent": 1} and doc.events_read == 1
    assert con.sql(
        f"SELECT action, biz_step, read_point, lot, expiry, kind FROM {STAGE_EVENTS}"
    ).fetchall() == [
        (
            "ADD",
            "commissioning",
            "urn:epc:id:sgln:0614141.00001.0",
            "L1",
            "2027-01-31",
            "commissioning",
        )
    ]
    assert con.sql(f"SELECT count(*) FROM {STAGE_EPCS}").fetchone() == (1,)


def test_a_json_document_of_another_type_or_shape_is_not_epcis(tmp_path: Path) -> None:
    for body, words in (
        ([{"type": "ObjectEvent"}], "the JSON is an array"),
        ({"type": "EPCISQueryDocument", "epcisBody": {"queryResults": {}}}, "'EPCISQueryDocument'"),
        ({"hello": "world"}, "neither the type EPCISDocument nor an epcisBody.eventList"),
    ):
        with pytest.raises(EpcisRejected) as caught:
            _stage(_write(tmp_path, body))
        assert words in caught.value.reason


def _plain(events: list[dict[str, object]], **fields: object) -> dict[str, object]:
    return {"type": "EPCISDocument", **fields, "epcisBody": {"eventList": events}}


_EVENTS = [
    {"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning",
     "epcList": [f"urn:epc:id:sgtin:0614141.107346.{i}" for i in range(300)],
     "ilmd": {"cbvmda:lotNumber": "L1"}, "bizLocation": {"id": "urn:epc:id:sgln:0614141.00001.0"}},
    {"type": "AggregationEvent", "action": "ADD", "parentID": "urn:epc:id:sscc:0614141.1234567890",
     "childEPCs": [f"urn:epc:id:sgtin:0614141.107346.{i}" for i in range(300)]},
    {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "shipping",
     "epcList": ["urn:epc:id:sscc:0614141.1234567890"],
     "sourceList": [{"type": "owning_party", "source": "urn:epc:id:sgln:0614141.00001.0"}]},
]  # fmt: skip


def _staged(con: duckdb.DuckDBPyConnection) -> tuple[object, ...]:
    return tuple(
        con.sql(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
        for table in (STAGE_EVENTS, STAGE_EPCS, STAGE_PARTIES)
    )


def test_a_plain_document_is_read_by_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events built in C: the token reader is never called."""
    from connectors import epcis_jsonld_tokens

    monkeypatch.setattr(
        epcis_jsonld_tokens, "read_tokens", lambda *a: pytest.fail("token reader used")
    )
    con, doc = _stage(_write(tmp_path, _plain(_EVENTS, sender="0614141.00001.0")))
    assert (doc.events_read, doc.epcs_staged, doc.sbdh_sender) == (3, 601, "0614141.00001.0")


def test_an_event_too_large_for_the_fast_path_is_read_token_by_token_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory must not grow with an event's EPCs: past FAST_EVENT_LIMIT bytes the
    document is read again token by token, with the same staged rows."""
    from connectors import epcis_jsonld, epcis_jsonld_tokens

    path = _write(tmp_path, _plain(_EVENTS))
    fast = _staged(_stage(path)[0])
    calls: list[int] = []
    original = epcis_jsonld_tokens.read_tokens
    monkeypatch.setattr(
        epcis_jsonld_tokens, "read_tokens", lambda *a: calls.append(1) or original(*a)
    )
    monkeypatch.setattr(epcis_jsonld, "FAST_EVENT_LIMIT", 2000)
    con, doc = _stage(path)
    assert calls == [1] and doc.events_read == 3
    assert _staged(con) == fast


def test_a_sender_after_the_events_is_found_by_the_fast_path_too(tmp_path: Path) -> None:
    body = {
        "type": "EPCISDocument",
        "epcisBody": {"eventList": _EVENTS},
        "sender": "0614141.00009.0",
    }
    _, doc = _stage(_write(tmp_path, body))
    assert doc.sbdh_sender == "0614141.00009.0"


# Events of every form the plain reader must read or hand on: plain ones, and ones with a
# prefixed key the rules read, a lot outside the ILMD, a nested ILMD, a location with more
# keys, a scalar where a container is read and the reverse, parties of every shape.
_FORMS = [
    *_EVENTS,
    {"type": "ObjectEvent", "action": " ADD ", "bizStep": "cbv:BizStep-commissioning",
     "eventTime": "2024-01-01T00:00:00Z", "disposition": "active", "x:note": 7,
     "epcList": ["urn:epc:id:sgtin:0614141.107346.A1", " urn:epc:id:sgtin:0614141.107346.A2 "],
     "readPoint": {"id": " urn:epc:id:sgln:0614141.00001.0 "},
     "ilmd": {"cbvmda:lotNumber": "L2", "lotNumber": "L3", "cbvmda:itemExpirationDate": 20270630,
              "other": None, "flag": True},
     "bizTransactionList": [{"type": "po", "bizTransaction": "urn:x:1"}]},
    {"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning",
     "epcList": ["urn:epc:id:sgtin:0614141.107346.B1"], "gs1ushc:lotNumber": "L4"},
    {"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning", "lotNumber": "L5",
     "epcList": ["urn:epc:id:sgtin:0614141.107346.B2"], "ilmd": {"lotNumber": "L6"}},
    {"@type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning",
     "epcList": ["urn:epc:id:sgtin:0614141.107346.B3"]},
    {"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning",
     "epcList": ["urn:epc:id:sgtin:0614141.107346.B4"],
     "ilmd": {"ext": {"lotNumber": "L7"}, "itemExpirationDate": "2027-01-31"}},
    {"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning",
     "epcList": ["urn:epc:id:sgtin:0614141.107346.B5"],
     "SAPExtension": {"ObjAttributes": {"LOTNO": "L8", "DATEX": "20270101"}},
     "readPoint": {"@id": "urn:epc:id:sgln:0614141.00002.0", "id": "urn:epc:id:sgln:0614141.00003.0"}},
    {"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning",
     "epcList": ["urn:epc:id:sgtin:0614141.107346.B6", 5, None],
     "extension": [{"name": "BATCH", "value": "L9"}, {"name": "EXPIRY", "value": "20270930"}]},
    {"type": ["ObjectEvent"], "action": "ADD", "epcList": ["urn:epc:id:sgtin:0614141.107346.B7"]},
    {"type": "ObjectEvent", "action": {"lotNumber": "L10"}, "bizStep": "commissioning",
     "epcList": ["urn:epc:id:sgtin:0614141.107346.B8"]},
    {"type": "ObjectEvent", "bizStep": "shipping", "epcList": {"x": 1}, "readPoint": "nowhere",
     "bizLocation": {"id": 12, "name": "a"}, "ilmd": "none", "eventID": "e1",
     "inputEPCList": ["urn:epc:id:sgtin:0614141.107346.C1"], "quantityList": [[1, 2], {"a": 1}],
     "sourceList": [{"@type": "cbv:SDT-owning_party", "source": " urn:epc:id:sgln:0614141.00001.0 "},
                    "x", [1], {"type": "location"}],
     "destinationList": [{"type": "location", "destination": "urn:epc:id:sgln:0012345.11111.0",
                          "extra": {"deep": 1}}]},
    {"type": "ObjectEvent", "bizStep": "shipping", "sourceList": {"type": "location"},
     "destinationList": [{"type": "location", "destination": "urn:epc:id:sgln:0012345.11111.0"}],
     "epcList": ["urn:epc:id:sscc:0614141.1234567890"], "parentID": None, "eventTime": [1]},
    {"type": "TransformationEvent", "bizStep": "commissioning",
     "inputEPCList": ["urn:epc:id:sgtin:0614141.107346.C2"],
     "outputEPCList": ["urn:epc:id:sgtin:0614141.107346.C3"], "ilmd": {"lotNumber": " "}},
    {"type": "TransformationEvent", "bizStep": "repacking",
     "outputEPCList": ["urn:epc:id:sgtin:0614141.107346.C4"]},
    {"type": "AggregationEvent", "action": "DELETE", "parentID": " urn:epc:id:sscc:0614141.1234567890",
     "childEPCs": [], "bizTransactionList": [{"type": "po", "x": [{"y": 1}]}]},
    {"type": "QuantityEvent", "epcClass": "urn:epc:class:lgtin:0614141.107346.L1", "quantity": 5},
    {"action": "OBSERVE", "epcList": ["urn:epc:id:sgtin:0614141.107346.C5"]},
]  # fmt: skip


def test_the_plain_event_reader_stages_what_the_key_by_key_reader_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path reads the usual event without a per-key detour (`_plain_event`) and hands
    every other one to `_any_event`: the staged rows are those of `_any_event` alone, for
    events of every form and for the real JSON-LD documents."""
    from connectors import epcis_jsonld

    paths = [_write(tmp_path, _plain(_FORMS, sender="0614141.00001.0"))]
    paths += [FIXTURES / name for name in _jsonld_fixtures()]
    plain = epcis_jsonld._plain_event
    taken: list[bool] = []
    monkeypatch.setattr(
        epcis_jsonld, "_plain_event", lambda *a: taken.append(plain(*a)) or taken[-1]
    )
    both = []
    for path in paths:
        con, doc = _stage(path)
        both.append((doc, _staged(con)))
    assert taken.count(True) >= 8 and taken.count(False) >= 10
    monkeypatch.setattr(epcis_jsonld, "_plain_event", lambda *a: False)
    for path, (doc, staged) in zip(paths, both, strict=True):
        con, alone = _stage(path)
        assert _staged(con) == staged, path.name
        assert alone == doc, path.name
