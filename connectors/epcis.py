"""Streaming, hardened reader of EPCIS XML documents (SPEC §6): TraceLink shipping files.

`stage_document(con, path)` reads one document with `lxml.etree.iterparse` and
stages what the shipping rules need into temporary DuckDB tables of `con`
(`schemas.shipping.STAGE_*`): one row per ObjectEvent/AggregationEvent, one row
per `<epc>` (with its event's index), one row per source/destination.  It returns
a `DocumentInfo` (counts, SBDH sender, sender candidates).

- EPCIS 1.2 (`urn:epcglobal:epcis:xsd:1`, schemaVersion 1.1 or 1.2, with or
  without the SBDH envelope) and EPCIS 2.0 (`urn:epcglobal:epcis:xsd:2`) XML.
  Event children are read by local name in no namespace or an EPCIS namespace;
  ILMD `lotNumber` / `itemExpirationDate` and the SBDH `Identifier` by local name
  in any namespace.
- Other event types (QuantityEvent, TransactionEvent, TransformationEvent —
  also inside a 1.2 `<extension>` wrapper — AssociationEvent) are counted and
  skipped; unknown extension elements are ignored.
- Hardening: no DTD loading, no entity resolution, no network.  A DOCTYPE
  rejects the whole document before its body is parsed (`EpcisRejected`), as do
  XML that is not well-formed and a root that is not an EPCISDocument.
  `huge_tree` stays off, so libxml2 keeps its depth and text-size limits.
- Memory stays flat: only the tags of interest reach Python (the `tag` filter of
  iterparse); each finished event is cleared and its previous siblings deleted;
  inside a very long EPC list the already-read `<epc>` elements are deleted every
  few thousand; the EPC texts are flushed every `batch_size` rows into DuckDB.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import polars as pl
from lxml import etree

from schemas.shipping import (
    STAGE_EPCS,
    STAGE_EVENTS,
    STAGE_PARTIES,
    STAGING_DDL,
    DocumentInfo,
)

EPCIS_NAMESPACES = ("urn:epcglobal:epcis:xsd:1", "urn:epcglobal:epcis:xsd:2")
READ_EVENTS = ("ObjectEvent", "AggregationEvent")
SKIPPED_EVENTS = ("QuantityEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent")
_PRUNE_EVERY = 4096  # delete already-read <epc> siblings this often inside one list
_PROLOG_CHUNK = 1 << 16

# Codes of the tags that reach Python.
_EPC, _PARENT, _ACTION, _BIZSTEP, _ID, _SOURCE, _DEST, _READ, _SKIP = range(9)
_LOT, _EXPIRY, _IDENTIFIER = 20, 21, 22

_CBV_PREFIX = re.compile(r"^(urn:epcglobal:cbv:[A-Za-z]+:|https?://ref\.gs1\.org/cbv/[A-Za-z]+-)")


class EpcisRejected(Exception):
    """The whole document is rejected (quarantined); `reason` says why in one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def cbv_word(value: str | None) -> str | None:
    """The bare CBV word of a bizStep / disposition / source type (URN, GS1 URL or bare)."""
    if value is None:
        return None
    return _CBV_PREFIX.sub("", value.strip())


def _names(local: str) -> list[str]:
    """`local` in no namespace and in both EPCIS namespaces (lxml tag-filter syntax)."""
    return ["{}" + local] + ["{%s}%s" % (ns, local) for ns in EPCIS_NAMESPACES]  # noqa: UP031


def _tag_codes() -> dict[str, int]:
    codes: dict[str, int] = {}
    for local, code in (
        ("epc", _EPC),
        ("parentID", _PARENT),
        ("action", _ACTION),
        ("bizStep", _BIZSTEP),
        ("id", _ID),
        ("source", _SOURCE),
        ("destination", _DEST),
        *((t, _READ) for t in READ_EVENTS),
        *((t, _SKIP) for t in SKIPPED_EVENTS),
    ):
        for name in _names(local):
            codes[name.removeprefix("{}")] = code
    return codes


_CODES = _tag_codes()
_ANY_NS = {"lotNumber": _LOT, "itemExpirationDate": _EXPIRY, "Identifier": _IDENTIFIER}
_TAG_FILTER = [t if t.startswith("{") else "{}" + t for t in _CODES] + [
    "{*}" + local for local in _ANY_NS
]


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def check_prolog(path: Path) -> tuple[str, str | None]:
    """Reject a document with a DOCTYPE, or that is not well-formed up to its root, or not EPCIS.

    Returns the root's namespace and schemaVersion.  Only the prolog and the root
    start tag are parsed (no DTD, no entities, no network): nothing the document
    refers to is ever read.
    """
    with path.open("rb") as fh:
        first = fh.read(_PROLOG_CHUNK)
        if b"<!DOCTYPE" in first:
            raise EpcisRejected("the document has a DOCTYPE (DTDs and entities are refused)")
        parser = etree.XMLPullParser(
            events=("start",), resolve_entities=False, no_network=True, load_dtd=False
        )
        chunk = first
        try:
            while True:
                if not chunk:
                    parser.close()
                    raise EpcisRejected("the file holds no XML element")
                parser.feed(chunk)
                for _, root in parser.read_events():
                    if not isinstance(root, etree._Element):
                        continue
                    info = root.getroottree().docinfo
                    if getattr(info, "doctype", "") or info.internalDTD is not None:
                        raise EpcisRejected(
                            "the document has a DOCTYPE (DTDs and entities are refused)"
                        )
                    ns, _, local = str(root.tag).rpartition("}")
                    ns = ns.lstrip("{")
                    if local != "EPCISDocument" or ns not in EPCIS_NAMESPACES:
                        raise EpcisRejected(
                            f"not an EPCIS document: the root element is {root.tag}, expected "
                            "EPCISDocument in urn:epcglobal:epcis:xsd:1 or :2"
                        )
                    return ns, root.get("schemaVersion")
                chunk = fh.read(_PROLOG_CHUNK)
        except etree.XMLSyntaxError as err:
            raise EpcisRejected(f"not well-formed XML: {err}") from err


class _Stager:
    """Columnar buffers flushed into the staging tables."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.epc_text: list[str | None] = []
        self.epc_ends: list[int] = []  # len(epc_text) at the end of each event of this batch
        self.base = 0  # events ended before this batch
        self.staged = 0
        self.events: dict[str, list[object]] = {
            k: []
            for k in (
                "event_index",
                "event_type",
                "action",
                "biz_step",
                "parent_id",
                "read_point",
                "biz_location",
                "lot",
                "expiry",
            )
        }
        self.parties: dict[str, list[object]] = {
            k: [] for k in ("event_index", "role", "type", "id")
        }

    def flush_epcs(self, events_ended: int) -> None:
        n = len(self.epc_text)
        if n:
            ends = pl.Series("e", self.epc_ends, dtype=pl.Int64)
            rows = pl.int_range(0, n, eager=True, dtype=pl.Int64)
            index = ends.search_sorted(rows, side="right").cast(pl.Int32) + (self.base + 1)
            frame = pl.DataFrame(
                {"event_index": index, "epc": pl.Series(self.epc_text, dtype=pl.String)}
            )
            self._insert(STAGE_EPCS, frame)
            self.staged += n
        self.epc_text.clear()
        self.epc_ends.clear()
        self.base = events_ended

    def flush_events(self) -> None:
        if self.events["event_index"]:
            schema = {k: pl.String for k in self.events} | {"event_index": pl.Int32}
            self._insert(STAGE_EVENTS, pl.DataFrame(self.events, schema=schema))
            for values in self.events.values():
                values.clear()
        if self.parties["event_index"]:
            schema = {k: pl.String for k in self.parties} | {"event_index": pl.Int32}
            self._insert(STAGE_PARTIES, pl.DataFrame(self.parties, schema=schema))
            for values in self.parties.values():
                values.clear()

    def _insert(self, table: str, frame: pl.DataFrame) -> None:
        self.con.register("_epcis_batch", frame)
        try:
            self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _epcis_batch")
        finally:
            self.con.unregister("_epcis_batch")


def stage_document(
    con: duckdb.DuckDBPyConnection, path: Path, batch_size: int = 100_000
) -> DocumentInfo:
    """Parse `path` into the staging tables of `con` (replaced) and describe it (SPEC §6).

    Raises `EpcisRejected` for a DOCTYPE, XML that is not well-formed or a root
    that is not an EPCIS document; the staged rows are then incomplete and must
    not be used.
    """
    namespace, schema_version = check_prolog(path)
    for ddl in STAGING_DDL:
        con.execute(ddl)
    info = DocumentInfo(file=path.name, namespace=namespace, schema_version=schema_version)
    stager = _Stager(con)
    epc_text = stager.epc_text
    add_epc = epc_text.append
    codes = _CODES
    any_ns = _ANY_NS
    events_ended = 0
    in_event = 0  # <epc> read in the current event, for pruning
    action = biz_step = parent = read_point = biz_location = lot = expiry = None
    parties: list[tuple[str, str | None, str | None]] = []
    by_type: dict[str, int] = {}
    shipping_sources: dict[str, None] = {}
    locations: dict[str, None] = {}

    context = etree.iterparse(
        str(path),
        events=("end",),
        tag=_TAG_FILTER,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        for _, el in context:
            tag = el.tag
            code = codes.get(tag)
            if code is None:
                code = any_ns.get(_local(tag), -1)
            if code == _EPC:
                add_epc(el.text)
                in_event += 1
                if in_event % _PRUNE_EVERY == 0:
                    holder = el.getparent()
                    if holder is not None:
                        del holder[: holder.index(el)]
                    if len(epc_text) >= batch_size:
                        stager.flush_epcs(events_ended)
            elif code in (_READ, _SKIP):
                local = _local(tag)
                by_type[local] = by_type.get(local, 0) + 1
                index = events_ended + 1
                if code == _READ:
                    step = cbv_word(biz_step)
                    ev = stager.events
                    ev["event_index"].append(index)
                    ev["event_type"].append(local)
                    ev["action"].append(action.strip() if action else None)
                    ev["biz_step"].append(step)
                    ev["parent_id"].append(parent.strip() if parent else None)
                    ev["read_point"].append(read_point)
                    ev["biz_location"].append(biz_location)
                    ev["lot"].append(lot)
                    ev["expiry"].append(expiry)
                    for where in (biz_location, read_point):
                        if where:
                            locations[where] = None
                    pt = stager.parties
                    for role, kind, ident in parties:
                        pt["event_index"].append(index)
                        pt["role"].append(role)
                        pt["type"].append(kind)
                        pt["id"].append(ident)
                        if (
                            ident
                            and role == "source"
                            and local == "ObjectEvent"
                            and step == "shipping"
                            and kind in ("owning_party", "location")
                        ):
                            shipping_sources[ident] = None
                    info.events_read += 1
                else:
                    info.events_skipped += 1
                events_ended = index
                stager.epc_ends.append(len(epc_text))
                action = biz_step = parent = read_point = biz_location = lot = expiry = None
                parties = []
                in_event = 0
                el.clear()
                holder = el.getparent()
                if holder is not None:
                    while el.getprevious() is not None:
                        del holder[0]
                if len(epc_text) >= batch_size:
                    stager.flush_epcs(events_ended)
                if len(stager.events["event_index"]) >= batch_size:
                    stager.flush_events()
            elif code == _PARENT:
                parent = el.text
            elif code == _ACTION:
                action = el.text
            elif code == _BIZSTEP:
                biz_step = el.text
            elif code == _ID:
                where = _local(el.getparent().tag)
                if where == "readPoint":
                    read_point = (el.text or "").strip() or None
                elif where == "bizLocation":
                    biz_location = (el.text or "").strip() or None
            elif code in (_SOURCE, _DEST):
                parties.append(
                    (
                        "source" if code == _SOURCE else "destination",
                        cbv_word(el.get("type")),
                        (el.text or "").strip() or None,
                    )
                )
            elif code in (_LOT, _EXPIRY):
                if any(_local(a.tag) == "ilmd" for a in el.iterancestors()):
                    value = (el.text or "").strip() or None
                    if code == _LOT and lot is None:
                        lot = value
                    elif code == _EXPIRY and expiry is None:
                        expiry = value
            elif code == _IDENTIFIER:
                holder = el.getparent()
                if (
                    info.sbdh_sender is None
                    and holder is not None
                    and _local(holder.tag) == "Sender"
                ):
                    info.sbdh_sender = (el.text or "").strip() or None
                    info.sbdh_sender_authority = el.get("Authority")
    except etree.XMLSyntaxError as err:
        raise EpcisRejected(f"not well-formed XML: {err}") from err
    stager.flush_epcs(events_ended)
    stager.flush_events()
    info.events_by_type = dict(sorted(by_type.items()))
    info.epcs_staged = stager.staged
    info.shipping_sources = list(shipping_sources)
    info.location_candidates = list(locations)
    return info
