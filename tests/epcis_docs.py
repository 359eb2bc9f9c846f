"""EPCIS documents for tests, one model written in three syntaxes (SPEC §6).

`Doc` / `Ev` describe a document; `write(doc, folder, syntax)` writes it as EPCIS
1.2 XML (`xml12`: source lists and ILMD in `<extension>`, TransformationEvents in
the EventList's `<extension>` wrapper, an SBDH envelope), EPCIS 2.0 XML (`xml20`)
or EPCIS 2.0 JSON-LD (`jsonld`: a document-level `sender`; `jsonld_prefixed`: every
key written with a `epcis:` prefix and the sender after the events, which the
JSON-LD reader reads token by token instead of building each event in C).  Each rule of §6 is
written the way real documents write it, in every syntax: CBV values as URN, bare
word, CURIE or web URI; the lot and expiry in the ILMD, on the event itself
(`gs1ushc:lotNumber`), in SAP's `SAPExtension/ObjAttributes` or in Optel's
`extension` elements.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

SYNTAXES = ("xml12", "xml20", "jsonld", "jsonld_prefixed")
CBV_FORMS = ("urn", "bare", "curie", "web")
LOT_SOURCES = ("ilmd", "event", "sap", "optel")

_CBV_KIND = {"bizStep": ("bizstep", "BizStep"), "sdt": ("sdt", "SDT")}
_NS = {
    "xml12": "urn:epcglobal:epcis:xsd:1",
    "xml20": "urn:epcglobal:epcis:xsd:2",
}
_XMLNS = (
    'xmlns:cbvmda="urn:epcglobal:cbv:mda" xmlns:gs1ushc="http://epcis.gs1us.org/hc/ns" '
    'xmlns:sap="urn:sap.com:epcis" xmlns:optelvision="http://www.optelvision.com" '
    'xmlns:sbdh="http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"'
)


def cbv(word: str, form: str, kind: str = "bizStep") -> str:
    """A CBV value written in one of its forms (§6 *CBV values*)."""
    urn_kind, web_kind = _CBV_KIND[kind]
    return {
        "urn": f"urn:epcglobal:cbv:{urn_kind}:{word}",
        "bare": word,
        "curie": f"cbv:{web_kind}-{word}",
        "web": f"https://ref.gs1.org/cbv/{web_kind}-{word}",
    }[form]


@dataclass
class Ev:
    """One event.  `epcs`: the epcList (ObjectEvent), childEPCs (AggregationEvent) or
    outputEPCList (TransformationEvent); `inputs`: a TransformationEvent's inputEPCList."""

    type: str = "ObjectEvent"
    action: str | None = "ADD"
    biz_step: str | None = None  # the bare CBV word
    epcs: list[str] = field(default_factory=list)
    parent: str | None = None
    inputs: list[str] = field(default_factory=list)
    read_point: str | None = None
    biz_location: str | None = None
    sources: list[tuple[str, str]] = field(default_factory=list)  # (type word, id)
    destinations: list[tuple[str, str]] = field(default_factory=list)
    lot: str | None = None
    expiry: str | None = None
    lot_source: str = "ilmd"
    expiry_source: str = "ilmd"
    extra_lot: tuple[str, str] | None = None  # (source, lot) written as well, a later source
    quantities: list[str] = field(default_factory=list)  # epcClass of a quantity list each


@dataclass
class Doc:
    events: list[Ev]
    sender: str | None = None  # the SBDH sender (XML) or the document's `sender` (JSON-LD)
    authority: str = "SGLN"
    cbv_form: str = "urn"


# ------------------------------------------------------------------------------ XML


def _x(tag: str, text: str | None) -> str:
    return "" if text is None else f"<{tag}>{escape(text)}</{tag}>"


def _epc_list(tag: str, epcs: list[str]) -> str:
    return f"<{tag}>" + "".join(f"<epc>{escape(e)}</epc>" for e in epcs) + f"</{tag}>"


def _xml_lot_parts(ev: Ev) -> tuple[str, str, str]:
    """(ILMD children, elements on the event itself, elements of the 1.2 extension or
    directly on a 2.0 event) for the event's lot and expiry sources."""
    ilmd, on_event, vendor = [], [], []
    values = [("lot", ev.lot, ev.lot_source), ("expiry", ev.expiry, ev.expiry_source)]
    if ev.extra_lot:
        values.append(("lot", ev.extra_lot[1], ev.extra_lot[0]))
    sap: list[str] = []
    for what, value, source in values:
        if value is None:
            continue
        if source == "ilmd":
            tag = "cbvmda:lotNumber" if what == "lot" else "cbvmda:itemExpirationDate"
            ilmd.append(_x(tag, value))
        elif source == "event":
            tag = "gs1ushc:lotNumber" if what == "lot" else "gs1ushc:itemExpirationDate"
            on_event.append(_x(tag, value))
        elif source == "sap":
            sap.append(_x("LOTNO" if what == "lot" else "DATEX", value))
        else:
            name = "BATCH" if what == "lot" else "EXPIRY"
            vendor.append(
                f"<optelvision:extension name={quoteattr(name)}>{escape(value)}"
                "</optelvision:extension>"
            )
    if sap:
        on_event.append(
            "<sap:SAPExtension><ObjAttributes>"
            + "".join(sap)
            + "</ObjAttributes></sap:SAPExtension>"
        )
    return "".join(ilmd), "".join(on_event), "".join(vendor)


_QUANTITY_LISTS = {
    "AggregationEvent": "childQuantityList",
    "TransformationEvent": "outputQuantityList",
}


def _xml_event(ev: Ev, syntax: str, form: str) -> str:
    v12 = syntax == "xml12"
    parts = [
        "<eventTime>2024-05-01T00:00:00Z</eventTime><eventTimeZoneOffset>+00:00</eventTimeZoneOffset>"
    ]
    if ev.type == "AggregationEvent":
        parts.append(_x("parentID", ev.parent))
        parts.append(_epc_list("childEPCs", ev.epcs))
    elif ev.type == "TransformationEvent":
        parts.append(_epc_list("inputEPCList", ev.inputs))
        parts.append(_epc_list("outputEPCList", ev.epcs))
    elif ev.type == "ObjectEvent":
        parts.append(_epc_list("epcList", ev.epcs))
    elif ev.epcs:  # an AssociationEvent and the like
        parts.append(_x("parentID", ev.parent) + _epc_list("childEPCs", ev.epcs))
    if ev.type != "TransformationEvent":
        parts.append(_x("action", ev.action))
    parts.append(_x("bizStep", cbv(ev.biz_step, form) if ev.biz_step else None))
    if ev.read_point:
        parts.append(f"<readPoint><id>{escape(ev.read_point)}</id></readPoint>")
    if ev.biz_location:
        parts.append(f"<bizLocation><id>{escape(ev.biz_location)}</id></bizLocation>")
    lists = ""
    if ev.sources:
        lists += (
            "<sourceList>"
            + "".join(
                f"<source type={quoteattr(cbv(t, form, 'sdt'))}>{escape(i)}</source>"
                for t, i in ev.sources
            )
            + "</sourceList>"
        )
    if ev.destinations:
        lists += (
            "<destinationList>"
            + "".join(
                f"<destination type={quoteattr(cbv(t, form, 'sdt'))}>{escape(i)}</destination>"
                for t, i in ev.destinations
            )
            + "</destinationList>"
        )
    quantities = ""
    if ev.quantities:
        tag = _QUANTITY_LISTS.get(ev.type, "quantityList")
        quantities = (
            f"<{tag}>"
            + "".join(
                f"<quantityElement><epcClass>{escape(c)}</epcClass><quantity>10</quantity>"
                "<uom>EA</uom></quantityElement>"
                for c in ev.quantities
            )
            + f"</{tag}>"
        )
    ilmd, on_event, vendor = _xml_lot_parts(ev)
    ilmd = f"<ilmd>{ilmd}</ilmd>" if ilmd else ""
    if v12 and ev.type in ("ObjectEvent", "AggregationEvent"):
        inner = quantities + lists + ilmd + vendor
        parts.append(f"<extension>{inner}</extension>" if inner else "")
    else:
        parts.append(quantities + lists + ilmd + vendor)
    parts.append(on_event)
    return f"<{ev.type}>" + "".join(parts) + f"</{ev.type}>"


def to_xml(doc: Doc, syntax: str = "xml12") -> str:
    header = ""
    if doc.sender is not None:
        header = (
            "<EPCISHeader><sbdh:StandardBusinessDocumentHeader><sbdh:HeaderVersion>1.0"
            "</sbdh:HeaderVersion><sbdh:Sender>"
            f"<sbdh:Identifier Authority={quoteattr(doc.authority)}>{escape(doc.sender)}"
            "</sbdh:Identifier></sbdh:Sender></sbdh:StandardBusinessDocumentHeader></EPCISHeader>"
        )
    events = []
    for ev in doc.events:
        text = _xml_event(ev, syntax, doc.cbv_form)
        if syntax == "xml12" and ev.type not in ("ObjectEvent", "AggregationEvent"):
            text = f"<extension>{text}</extension>"  # 1.2's EventList extension wrapper
        events.append(text)
    version = "1.2" if syntax == "xml12" else "2.0"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<epcis:EPCISDocument xmlns:epcis="{_NS[syntax]}" '
        f'{_XMLNS} schemaVersion="{version}" creationDate="2024-05-01T00:00:00Z">\n{header}'
        "<EPCISBody><EventList>\n" + "\n".join(events) + "\n</EventList></EPCISBody>"
        "</epcis:EPCISDocument>\n"
    )


# ------------------------------------------------------------------------------ JSON-LD


def _json_event(ev: Ev, form: str) -> dict[str, object]:
    out: dict[str, object] = {
        "type": ev.type,
        "eventTime": "2024-05-01T00:00:00Z",
        "eventTimeZoneOffset": "+00:00",
    }
    if ev.type == "AggregationEvent":
        if ev.parent is not None:
            out["parentID"] = ev.parent
        out["childEPCs"] = list(ev.epcs)
    elif ev.type == "TransformationEvent":
        out["inputEPCList"] = list(ev.inputs)
        out["outputEPCList"] = list(ev.epcs)
    elif ev.type == "ObjectEvent":
        out["epcList"] = list(ev.epcs)
    elif ev.epcs:
        out["parentID"] = ev.parent
        out["childEPCs"] = list(ev.epcs)
    if ev.quantities:
        out[_QUANTITY_LISTS.get(ev.type, "quantityList")] = [
            {"epcClass": c, "quantity": 10, "uom": "EA"} for c in ev.quantities
        ]
    if ev.type != "TransformationEvent" and ev.action is not None:
        out["action"] = ev.action
    if ev.biz_step:
        out["bizStep"] = cbv(ev.biz_step, form)
    if ev.read_point:
        out["readPoint"] = {"id": ev.read_point}
    if ev.biz_location:
        out["bizLocation"] = {"id": ev.biz_location}
    if ev.sources:
        out["sourceList"] = [{"type": cbv(t, form, "sdt"), "source": i} for t, i in ev.sources]
    if ev.destinations:
        out["destinationList"] = [
            {"type": cbv(t, form, "sdt"), "destination": i} for t, i in ev.destinations
        ]
    values = [("lot", ev.lot, ev.lot_source), ("expiry", ev.expiry, ev.expiry_source)]
    if ev.extra_lot:
        values.append(("lot", ev.extra_lot[1], ev.extra_lot[0]))
    ilmd: dict[str, str] = {}
    sap: dict[str, str] = {}
    optel: list[dict[str, str]] = []
    for what, value, source in values:
        if value is None:
            continue
        if source == "ilmd":
            ilmd["cbvmda:lotNumber" if what == "lot" else "cbvmda:itemExpirationDate"] = value
        elif source == "event":
            out["gs1ushc:lotNumber" if what == "lot" else "gs1ushc:itemExpirationDate"] = value
        elif source == "sap":
            sap["LOTNO" if what == "lot" else "DATEX"] = value
        else:
            optel.append({"@name": "BATCH" if what == "lot" else "EXPIRY", "#text": value})
    if ilmd:
        out["ilmd"] = ilmd
    if sap:
        out["sap:SAPExtension"] = {"ObjAttributes": sap}
    if optel:
        out["optelvision:extension"] = optel
    return out


def _prefixed(value: object) -> object:
    """Every key of a JSON value with an `epcis:` prefix (`@` keys and prefixed ones kept)."""
    if isinstance(value, dict):
        return {
            (k if k.startswith("@") or ":" in k else f"epcis:{k}"): _prefixed(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_prefixed(v) for v in value]
    return value


def to_jsonld(doc: Doc, prefixed: bool = False) -> str:
    body: dict[str, object] = {
        "@context": [
            "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
            {"gs1ushc": "http://epcis.gs1us.org/hc/ns", "sap": "urn:sap.com:epcis",
             "optelvision": "http://www.optelvision.com"},
        ],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2024-05-01T00:00:00Z",
    }  # fmt: skip
    if doc.sender is not None and not prefixed:
        body["sender"] = doc.sender
    body["epcisBody"] = {"eventList": [_json_event(ev, doc.cbv_form) for ev in doc.events]}
    if prefixed:
        body = _prefixed(body)  # type: ignore[assignment]
        if doc.sender is not None:
            body["sender"] = doc.sender  # after the events
    return json.dumps(body, indent=1)


def write(doc: Doc, folder: Path, syntax: str, stem: str = "shipping_1") -> Path:
    """The document written in `syntax` to `folder/<stem>.xml` or `.jsonld`."""
    if syntax.startswith("jsonld"):
        path = folder / f"{stem}.jsonld"
        path.write_text(to_jsonld(doc, prefixed=syntax == "jsonld_prefixed"), encoding="utf-8")
    else:
        path = folder / f"{stem}.xml"
        path.write_text(to_xml(doc, syntax), encoding="utf-8")
    return path
