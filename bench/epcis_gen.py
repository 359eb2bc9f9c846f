"""Generator of realistic TraceLink-style EPCIS documents for the benchmark (SPEC §6):
EPCIS 1.2 XML (`write_document`) and the same events as EPCIS 2.0 JSON-LD
(`write_document_jsonld`).

Shape (what a CMO sends after a production run): for every case, one
commissioning ObjectEvent for its units and the case (ILMD lot and expiry), then
one packing AggregationEvent case ← units; for every pallet, a commissioning
event for its SSCC and a packing AggregationEvent pallet ← cases; at the end one
shipping ObjectEvent that lists only the pallets (sources/destinations typed).

The document is written to disk as it is generated (never built in memory).
Serials are deterministic functions of a running index (`unit_serials`), so the
benchmark can load the matching serial pool without reading the document.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import polars as pl

COMPANY_PREFIX = "0614141"
UNIT_ITEM_REF = "012345"  # indicator 0 → GTIN 00614141123452 after the check digit
CASE_ITEM_REF = "512345"  # indicator 5
SENDER_SGLN = "0614141.00001.0"
RECEIVER_SGLN = "0012345.11111.0"
LOT = "LOT-A1"
EXPIRY = "2027-06-30"
SERIAL_MULTIPLIER = 2654435761  # odd and prime to 5: i -> i*M mod 10^12 is a bijection


@dataclass(frozen=True)
class Shape:
    """How many SGTINs (units + cases) and how they are packed."""

    sgtins: int
    units_per_case: int = 20
    cases_per_pallet: int = 40

    @property
    def cases(self) -> int:
        return max(1, self.sgtins // (self.units_per_case + 1))

    @property
    def units(self) -> int:
        return self.cases * self.units_per_case

    @property
    def pallets(self) -> int:
        return -(-self.cases // self.cases_per_pallet)

    @property
    def total_sgtins(self) -> int:
        return self.units + self.cases


def _serial(i: int) -> str:
    return f"{(i * SERIAL_MULTIPLIER) % 10**12:012d}"


def serials_frame(shape: Shape) -> pl.DataFrame:
    """The (item_ref, serial) of every SGTIN the document commissions: units then cases."""

    def block(n: int, offset: int, ref: str) -> pl.DataFrame:
        idx = pl.int_range(offset, offset + n, dtype=pl.Int64, eager=True)
        return pl.DataFrame(
            {
                "item_ref": [ref] * n,
                "serial": ((idx * SERIAL_MULTIPLIER) % 10**12).cast(pl.String).str.zfill(12),
            }
        )

    return pl.concat(
        [block(shape.units, 0, UNIT_ITEM_REF), block(shape.cases, shape.units, CASE_ITEM_REF)]
    )


_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1" xmlns:cbvmda="urn:epcglobal:cbv:mda" xmlns:sbdh="http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader" xmlns:tl="http://epcis.tracelink.com/ns" schemaVersion="1.2" creationDate="2024-05-01T08:00:00Z">
  <EPCISHeader>
    <sbdh:StandardBusinessDocumentHeader>
      <sbdh:HeaderVersion>1.0</sbdh:HeaderVersion>
      <sbdh:Sender><sbdh:Identifier Authority="SGLN">urn:epc:id:sgln:{sender}</sbdh:Identifier></sbdh:Sender>
      <sbdh:Receiver><sbdh:Identifier Authority="SGLN">urn:epc:id:sgln:{receiver}</sbdh:Identifier></sbdh:Receiver>
      <sbdh:DocumentIdentification>
        <sbdh:Standard>EPCglobal</sbdh:Standard>
        <sbdh:TypeVersion>1.0</sbdh:TypeVersion>
        <sbdh:InstanceIdentifier>bench-1</sbdh:InstanceIdentifier>
        <sbdh:Type>Events</sbdh:Type>
        <sbdh:CreationDateAndTime>2024-05-01T08:00:00Z</sbdh:CreationDateAndTime>
      </sbdh:DocumentIdentification>
    </sbdh:StandardBusinessDocumentHeader>
  </EPCISHeader>
  <EPCISBody>
    <EventList>
"""
_LOCATION = """        <readPoint><id>urn:epc:id:sgln:{sender}</id></readPoint>
        <bizLocation><id>urn:epc:id:sgln:{sender}</id></bizLocation>
"""
_COMMISSION_END = """        </epcList>
        <action>ADD</action>
        <bizStep>urn:epcglobal:cbv:bizstep:commissioning</bizStep>
        <disposition>urn:epcglobal:cbv:disp:active</disposition>
{location}{ilmd}      </ObjectEvent>
"""
_ILMD = """        <extension>
          <ilmd>
            <cbvmda:lotNumber>{lot}</cbvmda:lotNumber>
            <cbvmda:itemExpirationDate>{expiry}</cbvmda:itemExpirationDate>
          </ilmd>
        </extension>
        <tl:dispositionAssignedEventExtensions><tl:packagingLevel>EA</tl:packagingLevel></tl:dispositionAssignedEventExtensions>
"""
_EVENT_HEAD = """      <{kind}>
        <eventTime>2024-05-01T07:00:00.000Z</eventTime>
        <eventTimeZoneOffset>+02:00</eventTimeZoneOffset>
"""
_AGG_END = """        </childEPCs>
        <action>ADD</action>
        <bizStep>urn:epcglobal:cbv:bizstep:packing</bizStep>
        <disposition>urn:epcglobal:cbv:disp:in_progress</disposition>
{location}      </AggregationEvent>
"""
_SHIP_END = """        </epcList>
        <action>OBSERVE</action>
        <bizStep>urn:epcglobal:cbv:bizstep:shipping</bizStep>
        <disposition>urn:epcglobal:cbv:disp:in_transit</disposition>
{location}        <bizTransactionList>
          <bizTransaction type="urn:epcglobal:cbv:btt:po">urn:epcglobal:cbv:bt:0012345111112:PO-1</bizTransaction>
        </bizTransactionList>
        <extension>
          <sourceList>
            <source type="urn:epcglobal:cbv:sdt:owning_party">urn:epc:id:sgln:{sender}</source>
            <source type="urn:epcglobal:cbv:sdt:location">urn:epc:id:sgln:{sender}</source>
          </sourceList>
          <destinationList>
            <destination type="urn:epcglobal:cbv:sdt:owning_party">urn:epc:id:sgln:{receiver}</destination>
            <destination type="urn:epcglobal:cbv:sdt:location">urn:epc:id:sgln:{receiver}</destination>
          </destinationList>
        </extension>
      </ObjectEvent>
    </EventList>
  </EPCISBody>
</epcis:EPCISDocument>
"""


def _sgtin(ref: str, serial: str) -> str:
    return f"          <epc>urn:epc:id:sgtin:{COMPANY_PREFIX}.{ref}.{serial}</epc>\n"


def _sscc(i: int) -> str:
    # extension digit 0 + company prefix (7) + serial reference (9) = 17 digits
    return f"urn:epc:id:sscc:{COMPANY_PREFIX}.0{i:09d}"


def write_document(path: Path, shape: Shape, sender: str = SENDER_SGLN) -> Path:
    """Write one EPCIS document of `shape` to `path`, streaming; returns `path`."""
    location = _LOCATION.format(sender=sender)
    ilmd = _ILMD.format(lot=LOT, expiry=EXPIRY)
    upc = shape.units_per_case
    with path.open("w", encoding="utf-8", buffering=1 << 20) as out:
        out.write(_HEAD.format(sender=sender, receiver=RECEIVER_SGLN))
        for c in range(shape.cases):
            units = [_sgtin(UNIT_ITEM_REF, _serial(c * upc + u)) for u in range(upc)]
            case = _sgtin(CASE_ITEM_REF, _serial(shape.units + c))
            out.write(_EVENT_HEAD.format(kind="ObjectEvent") + "        <epcList>\n")
            out.write("".join(units) + case)
            out.write(_COMMISSION_END.format(location=location, ilmd=ilmd))
            out.write(_EVENT_HEAD.format(kind="AggregationEvent"))
            out.write(f"        <parentID>{case.strip()[5:-6]}</parentID>\n        <childEPCs>\n")
            out.write("".join(units))
            out.write(_AGG_END.format(location=location))
        for p in range(shape.pallets):
            first = p * shape.cases_per_pallet
            cases = range(first, min(first + shape.cases_per_pallet, shape.cases))
            out.write(_EVENT_HEAD.format(kind="ObjectEvent") + "        <epcList>\n")
            out.write(f"          <epc>{_sscc(p)}</epc>\n")
            out.write(_COMMISSION_END.format(location=location, ilmd=""))
            out.write(_EVENT_HEAD.format(kind="AggregationEvent"))
            out.write(f"        <parentID>{_sscc(p)}</parentID>\n        <childEPCs>\n")
            out.write("".join(_sgtin(CASE_ITEM_REF, _serial(shape.units + c)) for c in cases))
            out.write(_AGG_END.format(location=location))
        out.write(_EVENT_HEAD.format(kind="ObjectEvent") + "        <epcList>\n")
        out.write("".join(f"          <epc>{_sscc(p)}</epc>\n" for p in range(shape.pallets)))
        out.write(_SHIP_END.format(location=location, sender=sender, receiver=RECEIVER_SGLN))
    return path


_JSON_HEAD = """{{
  "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
               {{"cbvmda": "urn:epcglobal:cbv:mda#", "tl": "http://epcis.tracelink.com/ns"}}],
  "type": "EPCISDocument",
  "schemaVersion": "2.0",
  "creationDate": "2024-05-01T08:00:00Z",
  "sender": "urn:epc:id:sgln:{sender}",
  "receiver": "urn:epc:id:sgln:{receiver}",
  "instanceIdentifier": "bench-1",
  "epcisBody": {{
    "eventList": [
"""
_JSON_EVENT = """      {{
        "type": "{kind}",
        "eventTime": "2024-05-01T07:00:00.000Z",
        "eventTimeZoneOffset": "+02:00",
{body}        "readPoint": {{"id": "urn:epc:id:sgln:{sender}"}},
        "bizLocation": {{"id": "urn:epc:id:sgln:{sender}"}}{tail}
      }}"""
_JSON_ILMD = (
    ',\n        "ilmd": {{"cbvmda:lotNumber": "{lot}", "cbvmda:itemExpirationDate": "{expiry}"}},'
    '\n        "tl:packagingLevel": "EA"'
)
_JSON_SHIP = """,
        "bizTransactionList": [{{"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:0012345111112:PO-1"}}],
        "sourceList": [
          {{"type": "owning_party", "source": "urn:epc:id:sgln:{sender}"}},
          {{"type": "location", "source": "urn:epc:id:sgln:{sender}"}}
        ],
        "destinationList": [
          {{"type": "owning_party", "destination": "urn:epc:id:sgln:{receiver}"}},
          {{"type": "location", "destination": "urn:epc:id:sgln:{receiver}"}}
        ]"""


def _json_list(key: str, uris: list[str]) -> str:
    items = ",\n".join(f'          "{u}"' for u in uris)
    return f'        "{key}": [\n{items}\n        ],\n'


def _json_body(lists: str, action: str, biz_step: str, disposition: str) -> str:
    return (
        f'{lists}        "action": "{action}",\n        "bizStep": "{biz_step}",\n'
        f'        "disposition": "{disposition}",\n'
    )


def write_document_jsonld(path: Path, shape: Shape, sender: str = SENDER_SGLN) -> Path:
    """The events of `write_document` as one EPCIS 2.0 JSON-LD document (bare CBV words,
    the ILMD's keys prefixed, a document-level `sender`), written as it is generated."""
    ilmd = _JSON_ILMD.format(lot=LOT, expiry=EXPIRY)
    upc = shape.units_per_case

    def sgtin(ref: str, serial: str) -> str:
        return f"urn:epc:id:sgtin:{COMPANY_PREFIX}.{ref}.{serial}"

    def event(kind: str, body: str, tail: str = "") -> str:
        return _JSON_EVENT.format(kind=kind, body=body, sender=sender, tail=tail)

    with path.open("w", encoding="utf-8", buffering=1 << 20) as out:
        out.write(_JSON_HEAD.format(sender=sender, receiver=RECEIVER_SGLN))
        first = True
        for c in range(shape.cases):
            units = [sgtin(UNIT_ITEM_REF, _serial(c * upc + u)) for u in range(upc)]
            case = sgtin(CASE_ITEM_REF, _serial(shape.units + c))
            commission = _json_body(
                _json_list("epcList", [*units, case]), "ADD", "commissioning", "active"
            )
            pack = _json_body(
                f'        "parentID": "{case}",\n' + _json_list("childEPCs", units),
                "ADD",
                "packing",
                "in_progress",
            )
            out.write(("" if first else ",\n") + event("ObjectEvent", commission, ilmd))
            out.write(",\n" + event("AggregationEvent", pack))
            first = False
        for p in range(shape.pallets):
            lo = p * shape.cases_per_pallet
            cases = [
                sgtin(CASE_ITEM_REF, _serial(shape.units + c))
                for c in range(lo, min(lo + shape.cases_per_pallet, shape.cases))
            ]
            commission = _json_body(
                _json_list("epcList", [_sscc(p)]), "ADD", "commissioning", "active"
            )
            pack = _json_body(
                f'        "parentID": "{_sscc(p)}",\n' + _json_list("childEPCs", cases),
                "ADD",
                "packing",
                "in_progress",
            )
            out.write(",\n" + event("ObjectEvent", commission))
            out.write(",\n" + event("AggregationEvent", pack))
        ship = _json_body(
            _json_list("epcList", [_sscc(p) for p in range(shape.pallets)]),
            "OBSERVE",
            "shipping",
            "in_transit",
        )
        tail = _JSON_SHIP.format(sender=sender, receiver=RECEIVER_SGLN)
        out.write(",\n" + event("ObjectEvent", ship, tail) + "\n    ]\n  }\n}\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--sgtins", type=int, default=1_000_000)
    parser.add_argument("--jsonld", action="store_true", help="EPCIS 2.0 JSON-LD instead of XML")
    args = parser.parse_args()
    shape = Shape(args.sgtins)
    (write_document_jsonld if args.jsonld else write_document)(args.out, shape)
    size = args.out.stat().st_size
    print(f"{args.out}: {shape.total_sgtins} SGTINs, {shape.pallets} pallets, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
