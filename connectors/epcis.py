"""Streaming, hardened reader of EPCIS XML documents (SPEC §6): TraceLink shipping files.

`stage_document(con, path)` reads one document as a stream and stages what the
shipping rules need into temporary DuckDB tables of `con`
(`schemas.shipping.STAGE_*`): one row per ObjectEvent/AggregationEvent, one row
per `<epc>` (with its event's index), one row per source/destination.  It returns
a `DocumentInfo` (counts, SBDH sender, sender candidates).

- EPCIS 1.2 (`urn:epcglobal:epcis:xsd:1`, schemaVersion 1.1 or 1.2, with or
  without the SBDH envelope) and EPCIS 2.0 (`urn:epcglobal:epcis:xsd:2`) XML.
  Event fields are read by local name in no namespace or an EPCIS namespace
  (1.2 keeps sourceList/destinationList/ilmd inside `<extension>`, 2.0 does
  not); ILMD `lotNumber` / `itemExpirationDate` and the SBDH `Identifier` by
  local name in any namespace.
- Other event types (QuantityEvent, TransactionEvent, TransformationEvent —
  also inside a 1.2 `<extension>` wrapper — AssociationEvent) are counted and
  skipped; unknown extension elements are ignored.
- Hardening: no DTD loading, no entity resolution, no network.  A DOCTYPE
  rejects the whole document before its body is parsed (`EpcisRejected`), as do
  XML that is not well-formed and a root that is not an EPCISDocument.
  `huge_tree` stays off, so libxml2 keeps its depth and text-size limits.
- Speed and flat memory: lxml's incremental parser (`XMLPullParser`, what
  `iterparse` is built on, fed 1 MB at a time) hands Python only the finished
  EPC lists and events (a tag filter in C); an EPC list becomes a Python list of
  texts in one comprehension; each finished event is read, cleared and its
  previous siblings deleted; between two chunks an EPC list still being parsed
  is harvested and emptied, so one event with millions of EPCs never sits whole
  in the tree; the texts go to DuckDB every `batch_size` rows.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import re
import threading
from pathlib import Path
from typing import cast

import duckdb
import polars as pl
import pyarrow as pa
from lxml import etree

from schemas.shipping import (
    STAGE_EPCS,
    STAGE_EVENTS,
    STAGE_PARTIES,
    STAGING_DDL,
    DocumentInfo,
)
from transforms.epc import parse_epcs_sql

EPCIS_NAMESPACES = ("urn:epcglobal:epcis:xsd:1", "urn:epcglobal:epcis:xsd:2")
READ_EVENTS = ("ObjectEvent", "AggregationEvent")
SKIPPED_EVENTS = ("QuantityEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent")
_CHUNK = 1 << 20  # bytes fed to the parser at a time
_HARVEST_AT = 2048  # an open EPC list longer than this is harvested between chunks
_PROLOG_CHUNK = 1 << 16
# Parents whose <epc> children are read: ObjectEvent epcList, AggregationEvent childEPCs,
# and the EPC lists of the skipped event types (read, then ignored with their event).
_EPC_LISTS = frozenset({"epcList", "childEPCs", "inputEPCList", "outputEPCList"})

# Codes of the tags that reach Python.
_LIST, _READ, _SKIP, _IDENTIFIER = range(4)

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
        *((t, _LIST) for t in sorted(_EPC_LISTS)),
        *((t, _READ) for t in READ_EVENTS),
        *((t, _SKIP) for t in SKIPPED_EVENTS),
    ):
        for name in _names(local):
            codes[name.removeprefix("{}")] = code
    return codes


_CODES = _tag_codes()
_TAG_FILTER = [t if t.startswith("{") else "{}" + t for t in _CODES] + ["{*}Identifier"]
_LOCAL: dict[str, str] = {}


def _local(tag: object) -> str:
    """Local name of an element tag (`""` for comments and processing instructions)."""
    if not isinstance(tag, str):
        return ""
    local = _LOCAL.get(tag)
    if local is None:
        local = tag.rpartition("}")[2]
        if len(_LOCAL) < 4096:  # a document cannot grow the cache without bound
            _LOCAL[tag] = local
    return local


def _text(el: etree._Element | None) -> str | None:
    if el is None or el.text is None:
        return None
    return el.text.strip() or None


_Party = tuple[str, str | None, str | None]


def _child_codes() -> dict[str, int]:
    codes: dict[str, int] = {}
    for local, code in (
        ("action", 1),
        ("bizStep", 2),
        ("parentID", 3),
        ("readPoint", 4),
        ("bizLocation", 5),
        ("sourceList", 6),
        ("destinationList", 7),
        ("ilmd", 8),
        ("extension", 9),
    ):
        for name in _names(local):
            codes[name.removeprefix("{}")] = code
    return codes


_CHILD = _child_codes()
_CBV: dict[str | None, str | None] = {}
_ID_TAGS = frozenset(t.removeprefix("{}") for t in _names("id"))


def _cbv(value: str | None) -> str | None:
    word = _CBV.get(value, "")
    if word == "":
        word = _CBV[value] = cbv_word(value)
    return word


def _first_id(node: etree._Element) -> str | None:
    for child in node:
        if child.tag in _ID_TAGS:
            return _text(child)
    return None


class _Event:
    """The fields of one ObjectEvent / AggregationEvent, read from its finished element."""

    __slots__ = (
        "action",
        "biz_step",
        "parent",
        "read_point",
        "biz_location",
        "lot",
        "expiry",
        "parties",
    )

    def __init__(self, event: etree._Element) -> None:
        self.action: str | None = None
        self.biz_step: str | None = None
        self.parent: str | None = None
        self.read_point: str | None = None
        self.biz_location: str | None = None
        self.lot: str | None = None
        self.expiry: str | None = None
        self.parties: list[_Party] = []
        self._read(event)

    def _read(self, node: etree._Element) -> None:
        child_codes = _CHILD
        for child in node:
            code = child_codes.get(child.tag)  # type: ignore[call-overload]
            if code is None:
                continue
            if code == 1:
                self.action = _text(child)
            elif code == 2:
                self.biz_step = _cbv(child.text)
            elif code == 3:
                self.parent = _text(child)
            elif code == 4:
                self.read_point = _first_id(child)
            elif code == 5:
                self.biz_location = _first_id(child)
            elif code == 6 or code == 7:
                role = "source" if code == 6 else "destination"
                for item in child:
                    if _local(item.tag) == role:
                        self.parties.append((role, _cbv(item.get("type")), _text(item)))
            elif code == 8:
                for item in child.iter():
                    name = _local(item.tag)
                    if name == "lotNumber" and self.lot is None:
                        self.lot = _text(item)
                    elif name == "itemExpirationDate" and self.expiry is None:
                        self.expiry = _text(item)
            else:
                self._read(
                    child
                )  # EPCIS 1.2 keeps sourceList, destinationList, ilmd in <extension>


def check_prolog(path: Path) -> tuple[str, str | None]:
    """Reject a document with a DOCTYPE, or that is not well-formed up to its root, or not EPCIS.

    Returns the root's namespace and schemaVersion.  Only the prolog and the root
    start tag are parsed (no DTD, no entities, no network): nothing the document
    refers to is ever read.
    """
    with path.open("rb") as fh:
        first = fh.read(_PROLOG_CHUNK)
        if not first.strip():
            raise EpcisRejected("the file is empty: no XML element")
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

    def __init__(self, writer: _Writer) -> None:
        self.writer = writer
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
        self.writer.put(table, frame)


class _Writer:
    """Inserts batches into the staging tables from one background thread.

    DuckDB releases the GIL while it works, so the EPC texts of one batch are
    parsed (`transforms.epc.parse_epcs_sql`) and stored while Python reads the
    next part of the document.  The connection is only used by this thread
    until `close()`; an insert error is raised again by `close()`.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.jobs: queue.Queue[tuple[str, pa.Table] | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="epcis-stager", daemon=True)
        self.thread.start()

    def put(self, table: str, frame: pl.DataFrame) -> None:
        if self.error is not None:
            raise self.error
        # an Arrow table is scanned by DuckDB without the GIL, unlike a Polars frame
        self.jobs.put((table, frame.to_arrow()))

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is not None:
                continue  # drain after a failure
            table, frame = job
            try:
                self.con.register("_epcis_batch", frame)
                try:
                    self.con.execute(_INSERTS.get(table, _PLAIN_INSERT).format(table=table))
                finally:
                    self.con.unregister("_epcis_batch")
            except BaseException as err:  # noqa: BLE001 - handed to the parsing thread
                self.error = err

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


_PLAIN_INSERT = "INSERT INTO {table} BY NAME SELECT * FROM _epcis_batch"
_INSERTS = {
    STAGE_EPCS: "INSERT INTO {table} BY NAME "
    + parse_epcs_sql("(SELECT event_index, trim(epc) AS epc FROM _epcis_batch)")
    .replace("{", "{{")
    .replace("}", "}}"),
}


def _stage_event(
    stager: _Stager,
    index: int,
    event_type: str,
    ev: _Event,
    shipping_sources: dict[str, None],
    locations: dict[str, None],
) -> None:
    """Append one read event (and its sources/destinations) to the staging buffers."""
    cols = stager.events
    cols["event_index"].append(index)
    cols["event_type"].append(event_type)
    cols["action"].append(ev.action)
    cols["biz_step"].append(ev.biz_step)
    cols["parent_id"].append(ev.parent)
    cols["read_point"].append(ev.read_point)
    cols["biz_location"].append(ev.biz_location)
    cols["lot"].append(ev.lot)
    cols["expiry"].append(ev.expiry)
    for where in (ev.biz_location, ev.read_point):
        if where:
            locations[where] = None
    parties = stager.parties
    for role, kind, ident in ev.parties:
        parties["event_index"].append(index)
        parties["role"].append(role)
        parties["type"].append(kind)
        parties["id"].append(ident)
        if (
            ident
            and role == "source"
            and event_type == "ObjectEvent"
            and ev.biz_step == "shipping"
            and kind in ("owning_party", "location")
        ):
            shipping_sources[ident] = None


def _close_quietly(writer: _Writer) -> None:
    """Stop the writer after a failure of the parsing thread (that failure wins)."""
    with contextlib.suppress(BaseException):
        writer.close()


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
    writer = _Writer(con)
    stager = _Stager(writer)
    epc_text = stager.epc_text
    codes = _CODES
    events_ended = 0
    by_type: dict[str, int] = {}
    shipping_sources: dict[str, None] = {}
    locations: dict[str, None] = {}
    open_list: etree._Element | None = None  # the EPC list being parsed, if any

    parser = etree.XMLPullParser(
        events=("start", "end"),
        tag=_TAG_FILTER,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        with path.open("rb") as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if chunk:
                    parser.feed(chunk)
                else:
                    parser.close()
                for action, node in parser.read_events():
                    el = cast(etree._Element, node)  # start/end events carry elements
                    tag = el.tag
                    code = codes.get(tag, _IDENTIFIER)
                    if action == "start":
                        if code == _LIST:
                            open_list = el
                        continue
                    if code == _LIST:
                        open_list = None
                        # the <epc> children not yet harvested, all complete now
                        epc_text.extend([c.text for c in el])
                        el.clear()
                    elif code == _IDENTIFIER:
                        holder = el.getparent()
                        if (
                            info.sbdh_sender is None
                            and holder is not None
                            and _local(holder.tag) == "Sender"
                        ):
                            info.sbdh_sender = _text(el)
                            info.sbdh_sender_authority = el.get("Authority")
                    else:
                        local = _local(tag)
                        by_type[local] = by_type.get(local, 0) + 1
                        index = events_ended + 1
                        if code == _READ:
                            _stage_event(
                                stager, index, local, _Event(el), shipping_sources, locations
                            )
                            info.events_read += 1
                        else:
                            info.events_skipped += 1
                        events_ended = index
                        stager.epc_ends.append(len(epc_text))
                        el.clear()
                        holder = el.getparent()
                        if holder is not None:
                            while el.getprevious() is not None:
                                del holder[0]
                if not chunk:
                    break
                # A very long EPC list: harvest its complete children now (all but the
                # last, which may still be parsing) so the tree never holds it whole.
                if open_list is not None and len(open_list) > _HARVEST_AT:
                    done = len(open_list) - 1
                    epc_text.extend([c.text for c in itertools.islice(open_list, done)])
                    del open_list[:done]
                if len(epc_text) >= batch_size:
                    stager.flush_epcs(events_ended)
                if len(stager.events["event_index"]) >= batch_size:
                    stager.flush_events()
        stager.flush_epcs(events_ended)
        stager.flush_events()
    except etree.XMLSyntaxError as err:
        _close_quietly(writer)
        raise EpcisRejected(f"not well-formed XML: {err}") from err
    except BaseException:
        _close_quietly(writer)
        raise
    writer.close()
    info.events_by_type = dict(sorted(by_type.items()))
    info.epcs_staged = stager.staged
    info.shipping_sources = list(shipping_sources)
    info.location_candidates = list(locations)
    return info
