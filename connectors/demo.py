"""`cmi demo`: a realistic sample day written into an inbox (SPEC §1).

Every file kind of §3, with a few rows that are wrong on purpose so the demo
shows rejects and a quarantined file too.  The serial guide's worked examples
(§5.3, §5.4) are part of the day.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

from connectors.demo_contracts import demo_contract_day
from transforms.codes import gs1_check_digit


def gtin(body13: str) -> str:
    return body13 + gs1_check_digit(body13)


DEMO_PRODUCT = "11223344556675"  # the serial guide's demo product, with its valid check digit
PRODUCTS = [
    (DEMO_PRODUCT, "Medicine Demo Product"),
    (gtin("0403456700001"), "Amoxicillin 500 mg capsules x20"),
    (gtin("0403456700002"), "Ibuprofen 400 mg tablets x30"),
    (gtin("0403456700003"), "Insulin glargine 100 U/ml pen x5"),
    (gtin("0403456700004"), "Paracetamol 1 g tablets x8"),
]
SGLN_ACME = "1223344.00012.0"


def _csv(header: str, rows: list[str]) -> str:
    return header + "\n" + "".join(r + "\n" for r in rows)


def _serials(prefix: str, n: int, start: int = 1) -> list[str]:
    return [f"{prefix}{i:08d}" for i in range(start, start + n)]


def _shipping_xml(serials: list[str], when: dt.date) -> str:
    ts = f"{when.isoformat()}T06:00:00.000Z"
    epcs = "".join(f"<epc>urn:epc:id:sgtin:4034567.000001.{s}</epc>" for s in serials)
    sscc = "urn:epc:id:sscc:1223344.0000000017"
    # one serial the MAH never assigned to this CMO: an exception in the demo reports
    foreign = "<epc>urn:epc:id:sgtin:4034567.000001.NOTOURS0001</epc>"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1" xmlns:sbdh="http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader" xmlns:cbvmda="urn:epcglobal:cbv:mda" schemaVersion="1.2" creationDate="{ts}">
  <EPCISHeader>
    <sbdh:StandardBusinessDocumentHeader>
      <sbdh:HeaderVersion>1.0</sbdh:HeaderVersion>
      <sbdh:Sender><sbdh:Identifier Authority="SGLN">urn:epc:id:sgln:{SGLN_ACME}</sbdh:Identifier></sbdh:Sender>
      <sbdh:Receiver><sbdh:Identifier Authority="SGLN">urn:epc:id:sgln:4034567.00001.0</sbdh:Identifier></sbdh:Receiver>
      <sbdh:DocumentIdentification><sbdh:Standard>EPCglobal</sbdh:Standard><sbdh:TypeVersion>1.0</sbdh:TypeVersion>
        <sbdh:InstanceIdentifier>demo-1</sbdh:InstanceIdentifier><sbdh:Type>Events</sbdh:Type>
        <sbdh:CreationDateAndTime>{ts}</sbdh:CreationDateAndTime></sbdh:DocumentIdentification>
    </sbdh:StandardBusinessDocumentHeader>
  </EPCISHeader>
  <EPCISBody><EventList>
    <ObjectEvent><eventTime>{ts}</eventTime><eventTimeZoneOffset>+00:00</eventTimeZoneOffset>
      <epcList>{epcs}{foreign}</epcList><action>ADD</action>
      <bizStep>urn:epcglobal:cbv:bizstep:commissioning</bizStep>
      <disposition>urn:epcglobal:cbv:disp:active</disposition>
      <readPoint><id>urn:epc:id:sgln:{SGLN_ACME}</id></readPoint>
      <bizLocation><id>urn:epc:id:sgln:{SGLN_ACME}</id></bizLocation>
      <extension><ilmd><cbvmda:lotNumber>LOT-2026-11-A</cbvmda:lotNumber>
        <cbvmda:itemExpirationDate>2029-10-31</cbvmda:itemExpirationDate></ilmd></extension>
    </ObjectEvent>
    <AggregationEvent><eventTime>{ts}</eventTime><eventTimeZoneOffset>+00:00</eventTimeZoneOffset>
      <parentID>{sscc}</parentID><childEPCs>{epcs}</childEPCs><action>ADD</action>
      <bizStep>urn:epcglobal:cbv:bizstep:packing</bizStep>
      <bizLocation><id>urn:epc:id:sgln:{SGLN_ACME}</id></bizLocation>
    </AggregationEvent>
    <ObjectEvent><eventTime>{ts}</eventTime><eventTimeZoneOffset>+00:00</eventTimeZoneOffset>
      <epcList><epc>{sscc}</epc></epcList><action>OBSERVE</action>
      <bizStep>urn:epcglobal:cbv:bizstep:shipping</bizStep>
      <disposition>urn:epcglobal:cbv:disp:in_transit</disposition>
      <readPoint><id>urn:epc:id:sgln:{SGLN_ACME}</id></readPoint>
      <extension><sourceList><source type="urn:epcglobal:cbv:sdt:owning_party">urn:epc:id:sgln:{SGLN_ACME}</source></sourceList>
        <destinationList><destination type="urn:epcglobal:cbv:sdt:owning_party">urn:epc:id:sgln:4034567.00001.0</destination></destinationList></extension>
    </ObjectEvent>
  </EventList></EPCISBody>
</epcis:EPCISDocument>
"""


def demo_files(day: dt.date) -> dict[str, str]:
    """{file name: content} of the sample day."""
    p1, p2, p3, p4, p5 = (p for p, _ in PRODUCTS)
    files: dict[str, str] = {}
    files["products_2026.csv"] = _csv(
        "product_code,product_name,stock_unit",
        [f"{p},{n},EA" for p, n in PRODUCTS] + ["1.12233E+13,Mangled by a spreadsheet,EA"],
    )
    files["cmos_2026.csv"] = _csv(
        "cmo_id,cmo_name,street1,city,zip_code,country,produceable_products,collaboration_channel,sgln",
        [
            f"ACME-01,Acme Pharma Manufacturing GmbH,Industriestrasse 1,Mannheim,68161,DE,{p1};{p2},TL-ACME,{SGLN_ACME}",
            f"BIOFILL,BioFill Contract Services,12 Harbour Road,Cork,T12,IE,{p1};{p3};{p4},,",
            f"PACKRIGHT,PackRight / Sterile (Lyon),3 rue des Lilas,Lyon,69003,FR,{p2};{p5},,",
            "BROKEN,Missing city and country,,,,,,,",
        ],
    )
    files["partnerships_2026.csv"] = _csv(
        "cmo_id,event,contact_email,tenant,payment_model,event_time",
        [
            "BIOFILL,invite,serials@biofill.example,,,2026-11-20T09:00:00",
            "BIOFILL,accept,,biofill-prod,partner,2026-11-21T10:30:00",
            "PACKRIGHT,accept,,packright,customer,",  # wrong: accept without an invitation
        ],
    )
    pool = [f"{p1},{s}" for s in _serials("1000", 1370)]
    pool += [f"{p2},{s}" for s in _serials("2000", 600)]
    pool += [f"{p3},{s}" for s in _serials("3000", 400)]
    pool.append(f"{p1},{_serials('1000', 1)[0]}")  # wrong: repeats a serial of this file
    pool.append(f"{p5},BAD SERIAL WITH SPACES")  # wrong: not GS1 AI(21) characters
    files["serial_pool_attp_2026.csv"] = _csv("product_code,serial", pool)
    files["serial_pool_bad_header.csv"] = _csv("product_code,serail", [f"{p2},X1"])  # quarantined
    files["serial_generate_2026.csv"] = _csv(
        "product_code,quantity",
        [f"{p4},250", f"{p5},100", f"{p5},999999999"],  # last: FMD rule
    )
    files["assignments_2026.csv"] = _csv(
        "cmo_id,product_code,quantity",
        [
            f"ACME-01,{p1},10",
            f"ACME-01,{p1},1100",  # the guide's example: 1360 available -> 260
            f"ACME-01,{p2},100",  # ACME reports some of these commissioned and shipped
            f"BIOFILL,{p3},300",
            f"BIOFILL,{p4},200",
            f"PACKRIGHT,{p2},250",
            f"PACKRIGHT,{p5},50",
            f"PACKRIGHT,{p1},5",  # wrong: not produceable by PACKRIGHT
            f"BIOFILL,{p3},5000",  # wrong: more than available
        ],
    )
    files["serial_returns_2026.csv"] = _csv(
        "cmo_id,product_code,quantity", [f"PACKRIGHT,{p5},20", f"BIOFILL,{p4},9999"]
    )
    files["partner_requests_2026.csv"] = _csv(
        "request_id,cmo_id,product_code,quantity",
        [
            f"REQ-2026-0001,BIOFILL,{p3},120",
            f"REQ-2026-0002,BIOFILL,{p4},50",
            f"REQ-2026-0003,ACME-01,{p1},10",  # wrong: ACME-01 is not an active partner
        ],
    )
    files["exports_2026.csv"] = _csv(
        "cmo_id,product_code,quantity,allow_already_exported",
        [
            f"ACME-01,{p1},10,N",
            f"ACME-01,{p1},1105,N",  # wrong: the guide's example without the flag
            f"ACME-01,{p1},1105,Y",  # the guide's example: _CanContainDuplicateSerials
            f"PACKRIGHT,{p2},100,",
            f"BIOFILL,{p3},100,N",
        ],
    )
    files[f"shipping_acme_{day:%Y%m%d}.xml"] = _shipping_xml(_serials("2000", 24), day)
    files.update(demo_contract_day(day, [p for p, _ in PRODUCTS]))
    return files


def write_demo_day(inbox: Path, day: dt.date) -> list[Path]:
    """Write the sample day into `inbox`, settled (modified a minute ago)."""
    inbox.mkdir(parents=True, exist_ok=True)
    past = time.time() - 120
    written = []
    for name, text in demo_files(day).items():
        path = inbox / name
        path.write_text(text, encoding="utf-8")
        os.utime(path, (past, past))
        written.append(path)
    return written
