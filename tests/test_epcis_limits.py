"""Bounded input and clear messages for EPCIS documents, XML and JSON-LD (SPEC §8, §6).

A text node or JSON string over 1 MiB, nesting over 64 levels, a NUL byte (not text
in its encoding), an undefined entity, text that is not JSON: the document is
quarantined with a reason that names what is wrong, the line and the limit, before
anything is held whole.  Children whose peak memory is read with `resource.getrusage`
show that a 1 GB file costs no more than a small one; a larger one is refused by its size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from connectors.epcis import EpcisRejected, stage_document

ROOT = Path(__file__).resolve().parents[1]
HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1" schemaVersion="1.2">\n'
    "<EPCISBody><EventList>\n"
)
TAIL = "</EventList></EPCISBody></epcis:EPCISDocument>\n"
EVENT = (
    "<ObjectEvent><epcList><epc>urn:epc:id:sgtin:0614141.107346.1</epc></epcList>"
    "<action>ADD</action><bizStep>commissioning</bizStep>{inner}</ObjectEvent>\n"
)


def reason(path: Path) -> str:
    with pytest.raises(EpcisRejected) as caught:
        stage_document(duckdb.connect(), path)
    return caught.value.reason


def xml_file(tmp_path: Path, body: str | bytes, name: str = "shipping_x.xml") -> Path:
    path = tmp_path / name
    data = body if isinstance(body, bytes) else body.encode("utf-8")
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["shipping_big.xml", "shipping_big.json", "shipping_big.jsonld"])
def test_a_document_over_1_gb_is_refused_before_it_is_read(tmp_path: Path, name: str) -> None:
    """§8: a file over 1 GB is quarantined with a reason saying to split it, before it is
    read (a sparse file: its first byte would already not be a document)."""
    path = tmp_path / name
    with path.open("wb") as fh:
        fh.truncate(1_000_000_001)
    text = reason(path)
    assert "1,000,000,001 bytes" in text and "over the limit of 1 GB" in text
    assert "split it" in text


def test_a_document_of_exactly_1_gb_is_read(tmp_path: Path) -> None:
    """The limit itself is allowed: the sparse file is read, and refused for what it holds."""
    path = tmp_path / "shipping_edge.xml"
    with path.open("wb") as fh:
        fh.truncate(1_000_000_000)
    assert "over the limit of 1 GB" not in reason(path)


# ----------------------------------------------------------------------------------- XML


@pytest.mark.parametrize("size", [(1 << 20) + 10, 11_000_000])
def test_an_xml_text_node_over_1_mib_is_refused_with_its_line(tmp_path: Path, size: int) -> None:
    """Just over the limit, and the 11M characters of the fault round (libxml2 said
    "use XML_PARSE_HUGE")."""
    body = (
        HEAD
        + EVENT.format(inner="")
        + EVENT.format(inner=f"<x:note xmlns:x='urn:x'>{'a' * size}</x:note>")
        + TAIL
    )
    text = reason(xml_file(tmp_path, body))
    assert "line 5" in text and "1 MiB" in text, text
    assert "XML_PARSE_HUGE" not in text


def test_an_xml_text_node_of_1_mib_minus_a_little_is_read(tmp_path: Path) -> None:
    inner = f"<x:note xmlns:x='urn:x'>{'a' * ((1 << 20) - 100)}</x:note>"
    info = stage_document(
        duckdb.connect(), xml_file(tmp_path, HEAD + EVENT.format(inner=inner) + TAIL)
    )
    assert info.events_read == 1


@pytest.mark.parametrize("depth", [70, 300, 100_000])
def test_xml_nesting_over_64_levels_is_refused_with_its_line(tmp_path: Path, depth: int) -> None:
    """70 levels (under libxml2's own 256), 300 and 100,000 ("use XML_PARSE_HUGE")."""
    nest = "<x:a xmlns:x='urn:x'>" + "<x:a>" * depth + "</x:a>" * (depth + 1)
    text = reason(
        xml_file(tmp_path, HEAD + EVENT.format(inner="") + "\n" + EVENT.format(inner=nest) + TAIL)
    )
    assert "deeper than the limit of 64 levels at line 6" in text, text
    assert "XML_PARSE_HUGE" not in text


def test_xml_nesting_of_64_levels_is_read(tmp_path: Path) -> None:
    depth = 64 - 5  # EPCISDocument, EPCISBody, EventList, ObjectEvent, x:a
    nest = "<x:a xmlns:x='urn:x'>" + "<x:a>" * (depth - 1) + "</x:a>" * depth
    info = stage_document(
        duckdb.connect(), xml_file(tmp_path, HEAD + EVENT.format(inner=nest) + TAIL)
    )
    assert info.events_read == 1


def test_an_undefined_entity_is_named_with_its_line(tmp_path: Path) -> None:
    """Not "no element found (line 0)"."""
    body = HEAD + "\n" + EVENT.format(inner="<disposition>&foo;</disposition>") + TAIL
    text = reason(xml_file(tmp_path, body))
    assert "entity &foo;" in text and "line 5" in text and "does not define" in text, text


def test_a_nul_byte_is_not_text_and_names_its_line(tmp_path: Path) -> None:
    body = HEAD.replace("\n<EPCISBody>", "\n\x00<EPCISBody>") + TAIL
    text = reason(xml_file(tmp_path, body))
    assert "not text in its encoding" in text and "NUL byte at line 3" in text, text


def test_utf16_without_a_byte_order_mark_is_not_text_with_one_it_is(tmp_path: Path) -> None:
    body = HEAD + EVENT.format(inner="") + TAIL
    text = reason(xml_file(tmp_path, body.encode("utf-16-le"), "shipping_a.xml"))
    assert "NUL byte at line 1" in text and "byte-order mark" in text, text
    with_bom = body.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    info = stage_document(duckdb.connect(), xml_file(tmp_path, with_bom, "shipping_b.xml"))
    assert info.events_read == 1


def test_bytes_that_are_not_utf8_are_not_text_in_the_declared_encoding(tmp_path: Path) -> None:
    body = (HEAD + EVENT.format(inner="<x:n xmlns:x='urn:x'>caf\xe9</x:n>") + TAIL).encode(
        "latin-1"
    )
    text = reason(xml_file(tmp_path, body))
    assert "not text in its declared encoding at line 4" in text, text


# ------------------------------------------------------------------------------- JSON-LD

JSON_HEAD = '{\n "type": "EPCISDocument",\n "epcisBody": {\n  "eventList": [\n'
JSON_EVENT = (
    '   {{"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning",'
    ' "epcList": ["urn:epc:id:sgtin:0614141.107346.1"]{extra}}}'
)
JSON_TAIL = "\n  ]\n }\n}\n"


def json_file(tmp_path: Path, body: str | bytes, name: str = "shipping_x.jsonld") -> Path:
    return xml_file(tmp_path, body, name)


def test_a_json_string_over_1_mib_is_refused_with_its_line(tmp_path: Path) -> None:
    extra = ', "note": "' + "a" * ((1 << 20) + 10) + '"'
    body = (
        JSON_HEAD + JSON_EVENT.format(extra="") + ",\n" + JSON_EVENT.format(extra=extra) + JSON_TAIL
    )
    text = reason(json_file(tmp_path, body))
    assert "line 6" in text and "1 MiB" in text, text


def test_a_json_value_of_1_mib_without_a_quote_is_refused(tmp_path: Path) -> None:
    extra = ', "n": ' + "1" * ((1 << 20) + 10)
    text = reason(json_file(tmp_path, JSON_HEAD + JSON_EVENT.format(extra=extra) + JSON_TAIL))
    assert "1 MiB" in text and "line 5" in text, text


@pytest.mark.parametrize("depth", [70, 100_000])
def test_json_nesting_over_64_levels_is_refused_with_its_line(tmp_path: Path, depth: int) -> None:
    extra = ', "x":\n' + '{"a": ' * depth + "1" + "}" * depth
    body = JSON_HEAD + JSON_EVENT.format(extra=extra) + JSON_TAIL
    text = reason(json_file(tmp_path, body))
    assert "deeper than the limit of 64 levels at line 6" in text, text


def test_json_not_json_names_its_line(tmp_path: Path) -> None:
    body = (
        JSON_HEAD
        + JSON_EVENT.format(extra="")
        + ",\n"
        + JSON_EVENT.format(extra=", oops")
        + JSON_TAIL
    )
    text = reason(json_file(tmp_path, body))
    assert text.startswith("not JSON at line 6: "), text


def test_a_json_nul_byte_and_utf16_without_bom_are_not_text(tmp_path: Path) -> None:
    body = JSON_HEAD + JSON_EVENT.format(extra="") + JSON_TAIL
    assert "NUL byte at line 1" in reason(json_file(tmp_path, body.encode("utf-16-le")))
    nul = body.replace('"epcisBody"', '\x00"epcisBody"')
    assert "NUL byte at line 3" in reason(json_file(tmp_path, nul, "shipping_y.json"))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_json_with_a_byte_order_mark_is_read(tmp_path: Path, encoding: str) -> None:
    body = JSON_HEAD + JSON_EVENT.format(extra="") + JSON_TAIL
    info = stage_document(duckdb.connect(), json_file(tmp_path, body.encode(encoding)))
    assert (info.events_read, info.epcs_staged) == (1, 1)


# ---------------------------------------------------------------- memory of a child process

_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    import duckdb
    from connectors.epcis import EpcisRejected, stage_document
    try:
        stage_document(duckdb.connect(), Path(sys.argv[1]))
        outcome = "read"
    except EpcisRejected as err:
        outcome = err.reason
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"outcome": outcome, "peak_mb": peak}))
    """
)


def _child(path: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _sparse(path: Path, head: bytes, size: int = 1_000_000_000) -> Path:
    with path.open("wb") as fh:
        fh.write(head)
        fh.truncate(size)  # 1 GB (the largest file read) of NUL bytes after the head, no disk used
    return path


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("shipping_big.xml", HEAD.encode()),
        ("shipping_big.jsonld", (JSON_HEAD.replace("\n  ", "")).encode()),
    ],
)
def test_a_1_gb_file_with_a_nul_byte_on_line_3_is_refused_with_a_small_peak(
    tmp_path: Path, name: str, head: bytes
) -> None:
    """A sparse 1 GB file (NUL from line 3 or 4 on): refused at once; the child's peak
    stays that of reading a small document (the fault round saw 2.2 GB for 2 GiB, now
    refused by its size before it is read)."""
    path = _sparse(tmp_path / name, head.rstrip(b"\n") + b"\n")
    lines = head.rstrip(b"\n").count(b"\n") + 2
    small = _child(xml_file(tmp_path, HEAD + EVENT.format(inner="") + TAIL, "shipping_small.xml"))
    big = _child(path)
    assert f"NUL byte at line {lines}" in str(big["outcome"]), big
    assert float(big["peak_mb"]) < float(small["peak_mb"]) + 50, (big, small)


@pytest.mark.parametrize("suffix", ["xml", "jsonld"])
def test_a_64_mib_text_is_refused_before_it_is_held(tmp_path: Path, suffix: str) -> None:
    size = 64 << 20
    if suffix == "xml":
        data = (HEAD + "<ObjectEvent><x:n xmlns:x='urn:x'>").encode() + b"a" * size
    else:
        data = (JSON_HEAD + '   {"type": "ObjectEvent", "note": "').encode() + b"a" * size
    path = xml_file(tmp_path, data, f"shipping_text.{suffix}")
    result = _child(path)
    assert "longer than the limit of 1 MiB" in str(result["outcome"]), result
    small = _child(xml_file(tmp_path, HEAD + EVENT.format(inner="") + TAIL, "shipping_small.xml"))
    assert float(result["peak_mb"]) < float(small["peak_mb"]) + 50, (result, small)
