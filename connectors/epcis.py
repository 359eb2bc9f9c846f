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
  EPC lists and events (a tag filter in C); the texts of an EPC list are taken
  with one `map` (no per-EPC Python code); each finished event is read into a
  row; after each chunk everything before the last event read is deleted from
  the tree, and an EPC list still being parsed is harvested and emptied, so one
  event with millions of EPCs never sits whole in the tree.  Texts and rows go
  to a writer thread every `batch_size` EPCs or events, which parses the EPC URIs
  and the parentIDs in Polars (`transforms.epc.parse_epcs_frame`), gives each its
  identity key (`transforms.epc.epc_key_sql`) and each event its kind and expiry
  date while the next part is read; an EPC row knows its event by index only (the
  rules join the event for its kind and parent).  Meanwhile the cyclic garbage
  collector is paused and DuckDB runs on one thread (the parser has the other
  core); both settings are restored afterwards.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import queue
import re
import threading
from collections.abc import Iterator
from operator import attrgetter
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
from lxml import etree

from schemas.shipping import (
    STAGE_EPCS,
    STAGE_EVENTS,
    STAGE_PARTIES,
    STAGING_DDL,
    DocumentInfo,
    SourceParty,
)
from transforms.epc import epc_key_sql, parse_epcs_frame
from transforms.shipping import event_kind_sql
from transforms.state import one_thread

EPCIS_NAMESPACES = ("urn:epcglobal:epcis:xsd:1", "urn:epcglobal:epcis:xsd:2")
READ_EVENTS = ("ObjectEvent", "AggregationEvent")
SKIPPED_EVENTS = ("QuantityEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent")
_CHUNK = 1 << 20  # bytes fed to the parser at a time
_HARVEST_AT = 2048  # an open EPC list longer than this is harvested between chunks
_PROLOG_CHUNK = 1 << 16
_PROLOG_NOISE = re.compile(rb"<!--.*?-->|<\?.*?\?>", re.S)
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


_EVENT_LOCAL = {t: _local(t) for t, c in _CODES.items() if c in (_READ, _SKIP)}
_TEXT_OF = attrgetter("text")


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
        word = cbv_word(value)
        if len(_CBV) < 4096:  # like _LOCAL: a document cannot grow the cache without bound
            _CBV[value] = word
    return word


# Field positions in the row of one read event (`_read_event`).
_ACTION, _BIZ_STEP, _PARENT, _READ_POINT, _BIZ_LOCATION, _LOT, _EXPIRY = range(7)


def _first_id(node: etree._Element) -> str | None:
    for child in node:
        if child.tag in _ID_TAGS:
            return _text(child)
    return None


def _read_event(node: etree._Element, row: list[str | None], parties: list[_Party]) -> None:
    """Read the fields of one finished ObjectEvent / AggregationEvent into `row` and `parties`."""
    child_codes = _CHILD
    for child in node:
        code = child_codes.get(child.tag)  # type: ignore[call-overload]
        if code is None:
            continue
        if code == 1 or code == 3:
            text = child.text
            row[_ACTION if code == 1 else _PARENT] = (
                None if text is None else (text.strip() or None)
            )
        elif code == 2:
            row[_BIZ_STEP] = _cbv(child.text)
        elif code == 4 or code == 5:
            row[_READ_POINT if code == 4 else _BIZ_LOCATION] = _first_id(child)
        elif code == 6 or code == 7:
            role = "source" if code == 6 else "destination"
            for item in child:
                if _local(item.tag) == role:
                    parties.append((role, _cbv(item.get("type")), _text(item)))
        elif code == 8:
            for item in child.iter():
                name = _local(item.tag)
                if name == "lotNumber":
                    if row[_LOT] is None:
                        row[_LOT] = _text(item)
                elif name == "itemExpirationDate" and row[_EXPIRY] is None:
                    row[_EXPIRY] = _text(item)
        else:  # EPCIS 1.2 keeps sourceList, destinationList, ilmd in <extension>
            _read_event(child, row, parties)


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
        # a quick look before any parsing; comments and processing instructions may
        # mention a DOCTYPE without being one (the parser's check below is the full one)
        if b"<!DOCTYPE" in _PROLOG_NOISE.sub(b"", first):
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


_EVENT_COLUMNS = (
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
_PARTY_COLUMNS = ("event_index", "role", "type", "id")


class _Stager:
    """Row buffers of the parsing thread, handed to the writer as whole batches."""

    def __init__(self, writer: _Writer) -> None:
        self.writer = writer
        self.epc_text: list[str | None] = []
        self.epc_ends: list[int] = []  # len(epc_text) at the end of each event of this batch
        self.base = 0  # events ended before this batch
        self.staged = 0
        self.events: list[tuple[object, ...]] = []  # rows in _EVENT_COLUMNS order
        self.parties: list[tuple[object, ...]] = []  # rows in _PARTY_COLUMNS order

    def flush_epcs(self, events_ended: int) -> None:
        if self.epc_text:
            self.staged += len(self.epc_text)
            self.writer.put(_EpcBatch(self.epc_text, self.epc_ends, self.base))
            self.epc_text = []
            self.epc_ends = []
        else:
            self.epc_ends.clear()
        self.base = events_ended

    def flush_events(self) -> None:
        if self.events:
            self.writer.put(_EventBatch(self.events))
            self.events = []
        if self.parties:
            self.writer.put(_RowBatch(STAGE_PARTIES, _PARTY_COLUMNS, self.parties))
            self.parties = []


class _EpcBatch:
    """EPC texts in document order; `ends[i]` = texts up to the end of event `base + i + 1`
    (texts after the last end belong to the event still open, whose EPC list was
    harvested while parsed)."""

    def __init__(self, texts: list[str | None], ends: list[int], base: int) -> None:
        self.texts, self.ends, self.base = texts, ends, base

    def insert(self, con: duckdb.DuckDBPyConnection) -> None:
        n = len(self.texts)
        # the event of each text: events ended before it, + 1
        index = np.searchsorted(
            np.asarray(self.ends, dtype=np.int64), np.arange(n, dtype=np.int64), side="right"
        )
        texts = pl.DataFrame(
            [
                pl.Series("event_index", index.astype(np.int32) + np.int32(self.base + 1)),
                # a pretty-printed <epc> holds line breaks and tabs around the URI
                pl.Series("epc", self.texts, dtype=pl.String).str.strip_chars(),
            ]
        )
        batch = parse_epcs_frame(texts).to_arrow(compat_level=pl.CompatLevel.newest())
        _run(con, _EPC_INSERT, batch)


class _RowBatch:
    """Rows of the event or party staging table; every column but event_index is text."""

    def __init__(self, table: str, columns: tuple[str, ...], rows: list[tuple[object, ...]]):
        self.table, self.columns, self.rows = table, columns, rows

    def frame(self) -> pl.DataFrame:
        values = zip(*self.rows, strict=True)
        # Polars turns Python strings into a column several times faster than pyarrow
        # (the conversion holds the GIL that the parsing thread needs)
        return pl.DataFrame(
            [
                pl.Series(name, col, dtype=pl.Int32 if name == "event_index" else pl.String)
                for name, col in zip(self.columns, values, strict=True)
            ]
        )

    def insert(self, con: duckdb.DuckDBPyConnection) -> None:
        batch = self.frame().to_arrow(compat_level=pl.CompatLevel.newest())
        _run(con, _PLAIN_INSERT.format(table=self.table), batch)


class _EventBatch(_RowBatch):
    """Event rows, staged with what the rules derive from each (`_EVENT_INSERT`): the
    parentID is parsed here like the EPCs, while the next part is read."""

    def __init__(self, rows: list[tuple[object, ...]]):
        super().__init__(STAGE_EVENTS, _EVENT_COLUMNS, rows)

    def insert(self, con: duckdb.DuckDBPyConnection) -> None:
        batch = parse_epcs_frame(self.frame(), column="parent_id")
        _run(con, _EVENT_INSERT, batch.to_arrow(compat_level=pl.CompatLevel.newest()))


def _run(con: duckdb.DuckDBPyConnection, sql: str, batch: pa.Table) -> None:
    con.register("_epcis_batch", batch)
    try:
        con.execute(sql)
    finally:
        con.unregister("_epcis_batch")


class _Writer:
    """Inserts batches into the staging tables from one background thread.

    Polars and DuckDB release the GIL while they work, so the EPC texts of one batch
    are parsed (`transforms.epc.parse_epcs_frame`) and stored while Python reads the
    next part of the document.  The connection is only used by this thread
    until `close()`; an insert error is raised again by `close()`.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.jobs: queue.Queue[_EpcBatch | _RowBatch | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="epcis-stager", daemon=True)
        self.thread.start()

    def put(self, batch: _EpcBatch | _RowBatch) -> None:
        if self.error is not None:
            raise self.error
        self.jobs.put(batch)

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is not None:
                continue  # drain after a failure
            try:
                job.insert(self.con)
            except BaseException as err:  # noqa: BLE001 - handed to the parsing thread
                self.error = err

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


_PLAIN_INSERT = "INSERT INTO {table} BY NAME SELECT * FROM _epcis_batch"
_PARENT_KEY = epc_key_sql(epc="parent_id")
_EVENT_INSERT = f"""INSERT INTO {STAGE_EVENTS} BY NAME
    SELECT {", ".join(_EVENT_COLUMNS)}, TRY_CAST(expiry AS DATE) AS expiry_date,
        {event_kind_sql("event_type", "action", "biz_step")} AS kind,
        CASE WHEN parent_id IS NOT NULL THEN epc_scheme END AS parent_scheme,
        CASE WHEN parent_id IS NOT NULL THEN {_PARENT_KEY} END AS parent_key
    FROM _epcis_batch"""
_EPC_INSERT = f"""INSERT INTO {STAGE_EPCS} BY NAME
    SELECT event_index, epc, epc_scheme, product_code, serial, {epc_key_sql()} AS epc_key
    FROM _epcis_batch"""


def _close_quietly(writer: _Writer) -> None:
    """Stop the writer after a failure of the parsing thread (that failure wins)."""
    with contextlib.suppress(BaseException):
        writer.close()


def _drop_before(node: etree._Element) -> None:
    """Delete what precedes `node` in the tree: its preceding siblings and those of its ancestors.

    All of it is finished and was read (`node` is the last event read), and the
    element being parsed is not in it: it is after `node` in document order.
    """
    while (parent := node.getparent()) is not None:
        position = parent.index(node)
        if position:
            del parent[:position]
        node = parent


def stage_document(
    con: duckdb.DuckDBPyConnection, path: Path, batch_size: int = 250_000
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
    with one_thread(con), _no_cyclic_gc():
        return _stage(con, path, info, batch_size)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector inside the block (restored afterwards).

    Reading a document makes millions of short-lived element proxies and row tuples,
    none of them in a reference cycle; each collection pass would walk the rows
    still buffered (3% of the parse).  Reference counting frees them as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _stage(
    con: duckdb.DuckDBPyConnection, path: Path, info: DocumentInfo, batch_size: int
) -> DocumentInfo:
    writer = _Writer(con)
    stager = _Stager(writer)
    codes = _CODES
    locals_ = _EVENT_LOCAL
    text_of = _TEXT_OF
    events_ended = 0
    by_type: dict[str, int] = {}
    sources: dict[SourceParty, None] = {}  # each distinct source once, first occurrence
    locations: dict[str, None] = {}
    open_list: etree._Element | None = None  # the EPC list being parsed, if any
    last_event: etree._Element | None = None  # the last event read in this chunk

    parser = etree.XMLPullParser(
        events=("start", "end"),
        tag=_TAG_FILTER,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        # the indentation between elements is not built into the tree (~6% of the
        # parse); every text the rules read is trimmed, so none changes
        remove_blank_text=True,
    )
    try:
        with path.open("rb") as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if chunk:
                    parser.feed(chunk)
                else:
                    parser.close()
                epc_text = stager.epc_text
                epc_ends = stager.epc_ends
                event_rows = stager.events
                party_rows = stager.parties
                el: etree._Element
                for action, el in parser.read_events():  # type: ignore[assignment]
                    code = codes.get(el.tag, _IDENTIFIER)  # type: ignore[call-overload]
                    if action == "start":
                        if code == _LIST:
                            open_list = el
                        continue
                    if code == _LIST:
                        open_list = None
                        # the <epc> children not yet harvested, all complete now
                        epc_text.extend(map(text_of, el))
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
                        last_event = el
                        local = locals_[el.tag]  # type: ignore[index]
                        by_type[local] = by_type.get(local, 0) + 1
                        events_ended += 1
                        epc_ends.append(len(epc_text))
                        if code == _READ:
                            row: list[str | None] = [None] * 7
                            parties: list[_Party] = []
                            _read_event(el, row, parties)
                            event_rows.append((events_ended, local, *row))
                            if parties:
                                _stage_parties(
                                    party_rows, events_ended, local, row, parties, sources
                                )
                            for where in (row[_BIZ_LOCATION], row[_READ_POINT]):
                                if where:
                                    locations[where] = None
                        else:
                            info.events_skipped += 1
                if last_event is not None:
                    _drop_before(last_event)
                if not chunk:
                    break
                # A very long EPC list: harvest its complete children now (all but the
                # last, which may still be parsing) so the tree never holds it whole.
                if open_list is not None and len(open_list) > _HARVEST_AT:
                    done = len(open_list) - 1
                    epc_text.extend(map(text_of, itertools.islice(open_list, done)))
                    del open_list[:done]
                # events go with the EPC batches, so that few are left for the end
                if len(epc_text) >= batch_size or len(event_rows) >= batch_size:
                    stager.flush_epcs(events_ended)
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
    info.events_read = events_ended - info.events_skipped
    info.events_by_type = dict(sorted(by_type.items()))
    info.epcs_staged = stager.staged
    info.sources = list(sources)
    info.location_candidates = list(locations)
    return info


def _stage_parties(
    party_rows: list[tuple[object, ...]],
    index: int,
    event_type: str,
    row: list[str | None],
    parties: list[_Party],
    sources: dict[SourceParty, None],
) -> None:
    """Append the sources/destinations of one read event; keep its sources for the sender
    rule (`transforms.shipping.sender_candidates`), each distinct one once (a source
    repeated on every event does not grow with the document)."""
    for role, kind, ident in parties:
        party_rows.append((index, role, kind, ident))
        if ident and role == "source":
            sources[SourceParty(event_type, row[_BIZ_STEP], kind, ident)] = None
