"""Streaming reader of EPCIS 2.0 JSON-LD documents (SPEC §6): `shipping_*.json`, `*.jsonld`.

It feeds the same staging as the XML reader (`connectors.epcis_stage`), so every
shipping rule downstream is shared.  Read: `epcisBody.eventList`, each event's
`type`, `action`, `bizStep`, `epcList`, `parentID`, `childEPCs`, `outputEPCList`
(an `inputEPCList` is read past, never staged), `readPoint.id`, `bizLocation.id`,
`sourceList`, `destinationList`, and the lot sources of §6 in their order — the
`ilmd`; `lotNumber` / `itemExpirationDate` anywhere else in the event; SAP's
`SAPExtension.ObjAttributes` `LOTNO` / `DATEX`; Optel's `extension` objects whose
`name` (or `@name`) is `BATCH` / `EXPIRY`, the value in `value`, `@value` or
`#text`.  Keys match by their local name after any `prefix:` (and `@type` is
`type`); the document-level `sender` (GS1's pseudo-SBDH) takes the place of the
SBDH sender.

Streamed with ijson's C backend (yajl): events reach Python one token at a time
and memory does not grow with the number of EPCs; an EPC list's strings go
straight to the staging batches.  Bounded input (§8): NUL bytes (UTF-16 without a
byte-order mark; with one, the text is transcoded to UTF-8), a string or other
value over 1 MiB (`ByteGuard`, before the parser sees it) and nesting over 64
levels quarantine the file with the line and the limit; so do text that is not
JSON (with the line of the error) and JSON that is not an EPCIS document.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import duckdb
import ijson

from connectors.epcis_stage import (
    ACTION,
    BIZ_LOCATION,
    BIZ_STEP,
    EXPIRY,
    LOT,
    MAX_DEPTH,
    MAX_TEXT,
    PARENT,
    READ_POINT,
    ByteGuard,
    EpcisRejected,
    Party,
    Stager,
    cbv_word,
    depth_rejected,
    first_source,
    staging,
)
from schemas.shipping import DocumentInfo

_READ_TYPES = frozenset({"ObjectEvent", "AggregationEvent", "TransformationEvent"})
_STAGED_LISTS = frozenset({"epcList", "childEPCs", "outputEPCList"})
_DROPPED_LISTS = frozenset({"inputEPCList"})
_EVENT_DEPTH = 4  # root {epcisBody {eventList [ {event} ]}}
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_LOCAL: dict[str, str] = {}


def _local(key: str) -> str:
    """The local name of a key: after any `prefix:`; `@type` is `type`."""
    local = _LOCAL.get(key)
    if local is None:
        local = key.rpartition(":")[2]
        if local.startswith("@") and local in ("@type", "@id"):
            local = local[1:]
        if len(_LOCAL) < 4096:  # a document cannot grow the cache without bound
            _LOCAL[key] = local
    return local


class _Source:
    """The document's bytes as the parser reads them: every chunk checked by the guard
    first; a UTF-8 byte-order mark skipped, UTF-16/32 with one transcoded to UTF-8."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = path.open("rb")
        self.guard = ByteGuard(path, b'"', "a string or value", encoding="UTF-8")
        self.decoder: codecs.IncrementalDecoder | None = None
        self.started = False
        self.last = 0  # offset (in what the parser read) of the last chunk's start
        self.read_bytes = 0  # what the parser read so far

    def close(self) -> None:
        self.fh.close()

    def _start(self) -> None:
        self.started = True
        head = self.fh.read(4)
        for bom, encoding in _BOMS:
            if head.startswith(bom):
                self.fh.seek(len(bom))
                if encoding != "utf-8":
                    self.decoder = codecs.getincrementaldecoder(encoding)()
                return
        self.fh.seek(0)

    def read(self, size: int = MAX_TEXT) -> bytes:
        if not self.started:
            self._start()
        size = min(size, MAX_TEXT)
        if self.decoder is None:
            chunk = self.fh.read(size)
        else:
            raw = self.fh.read(size // 4)
            text = self.decoder.decode(raw, final=not raw)
            chunk = text.encode("utf-8")
            if not raw and not chunk:
                chunk = b""
        if chunk:
            self.guard.check(chunk)
        self.last = self.read_bytes
        self.read_bytes += len(chunk)
        return chunk


def stage_jsonld(
    con: duckdb.DuckDBPyConnection, path: Path, batch_size: int = 250_000
) -> DocumentInfo:
    """Parse the JSON-LD document `path` into the staging tables of `con` (replaced) and
    describe it.  Raises `EpcisRejected` when the document must be quarantined."""
    info = DocumentInfo(file=path.name, namespace="", schema_version=None, syntax="jsonld")
    if path.stat().st_size <= 1 << 16 and not path.read_bytes().strip(b" \t\r\n\xef\xbb\xbf"):
        raise EpcisRejected("the file is empty: no JSON")
    source = _Source(path)
    try:
        with staging(con):
            return _stage(con, source, info, batch_size)
    finally:
        source.close()


def _stage(
    con: duckdb.DuckDBPyConnection, source: _Source, info: DocumentInfo, batch_size: int
) -> DocumentInfo:
    stager = Stager(con)
    try:
        _read(source, stager, info, batch_size)
    except BaseException:
        stager.abandon()
        raise
    return stager.finish(info)


def _number_text(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _read(source: _Source, stager: Stager, info: DocumentInfo, batch_size: int) -> None:
    """One pass over the tokens: a small state machine whose hot path is an EPC list."""
    tokens = ijson.basic_parse(source, use_float=True, buf_size=MAX_TEXT)
    local = _local
    epc_text = stager.epc_text
    depth = 0
    key: str | None = None  # local name of the key before the current value, if any
    path: list[str | None] = []  # the key that opened each open container (a map in an
    # array: the array's key); path[d - 1] is the one at depth d
    in_list = 0  # 1: in an EPC list that is staged, 2: in one read past (inputEPCList)
    seen_root = False
    doc_type: str | None = None
    event_lists = 0
    event: _Event | None = None  # the event being read
    top: str | None = None  # the event's key under which the current value is
    try:
        for token, value in tokens:
            if in_list:
                if token == "string":
                    if in_list == 1:
                        epc_text.append(value)
                    continue
                in_list = 0  # anything else ends the fast path (its depth still counts)
            if token == "map_key":
                key = local(value)
                continue
            if token == "start_map" or token == "start_array":
                depth += 1
                if depth > MAX_DEPTH:
                    raise _DepthExceeded
                opened = key if key is not None or not path else path[-1]
                if event is not None:
                    if depth == _EVENT_DEPTH + 1:
                        top = key
                        if token == "start_array":
                            if key in _STAGED_LISTS:
                                in_list = 1
                            elif key in _DROPPED_LISTS:
                                in_list = 2
                    event.open(token, depth, top, opened)
                elif depth == _EVENT_DEPTH:
                    if token == "start_map" and path[1:3] == ["epcisBody", "eventList"]:
                        event = _Event()
                elif depth == 1:
                    if token != "start_map":
                        raise EpcisRejected(
                            "not an EPCIS document: the JSON is an array or a value, not an "
                            "EPCISDocument object"
                        )
                    seen_root = True
                elif depth == 3 and key == "eventList" and path[1:2] == ["epcisBody"]:
                    event_lists += 1
                path.append(opened)
                key = None
                continue
            if token == "end_map" or token == "end_array":
                closed = path.pop()
                if event is not None:
                    if depth == _EVENT_DEPTH:
                        event.end(stager)
                        event = None
                        if len(epc_text) >= batch_size or len(stager.events) >= batch_size:
                            stager.flush()
                            epc_text = stager.epc_text
                    else:
                        event.close(token, depth, top, closed)
                depth -= 1
                key = None
                continue
            # a scalar: string, number, boolean or null
            if event is not None:
                if key is not None:
                    text = value if token == "string" else _number_text(value)
                    if depth == _EVENT_DEPTH:
                        event.field(key, text)
                    else:
                        event.nested(key, text, depth, top, path)
            elif depth == 1 and key is not None:
                text = value if token == "string" else _number_text(value)
                if key == "type":
                    doc_type = text
                elif key == "sender" and info.sbdh_sender is None:
                    info.sbdh_sender = _clean(text)
                elif key == "schemaVersion":
                    info.schema_version = text
            key = None
    except _DepthExceeded:
        raise depth_rejected(_locate(source, deeper=True)) from None
    except ijson.JSONError as err:
        message = str(err).strip().splitlines()
        first = message[0] if message else type(err).__name__
        line = _locate(source, deeper=False)
        at = f" at line {line}" if line else ""
        raise EpcisRejected(
            f"not JSON{at}: {first}; ask the sender to correct the document"
        ) from err
    if not seen_root:
        raise EpcisRejected("the file is empty: no JSON")
    if doc_type is not None and doc_type != "EPCISDocument":
        raise EpcisRejected(
            f"not an EPCIS document: the JSON's type is {doc_type[:80]!r}, expected "
            "EPCISDocument (with epcisBody.eventList)"
        )
    if doc_type is None and not event_lists:
        raise EpcisRejected(
            "not an EPCIS document: the JSON has neither the type EPCISDocument nor an "
            "epcisBody.eventList"
        )


class _Event:
    """What one event of the eventList says, as its tokens arrive (keys in any order)."""

    __slots__ = ("type", "row", "parties", "party", "lots", "expiries", "optel")

    def __init__(self) -> None:
        self.type: str | None = None
        self.row: list[str | None] = [None] * 7
        self.parties: list[Party] = []
        self.party: list[str | None] = [None, None, None]  # role, type, id being read
        self.lots: list[str | None] = [None] * 4  # by source: ilmd, event, sap, optel
        self.expiries: list[str | None] = [None] * 4
        self.optel: list[str | None] = [None, None]  # name, value of an extension object

    def field(self, key: str, text: str | None) -> None:
        """A scalar directly in the event."""
        row = self.row
        if key == "type":
            self.type = text
        elif key == "action":
            row[ACTION] = _clean(text)
        elif key == "bizStep":
            row[BIZ_STEP] = cbv_word(text)
        elif key == "parentID":
            row[PARENT] = text
        elif key == "lotNumber":
            self.lots[1] = self.lots[1] or _clean(text)
        elif key == "itemExpirationDate":
            self.expiries[1] = self.expiries[1] or _clean(text)

    def open(self, token: str, depth: int, top: str | None, opened: str | None) -> None:
        if token == "start_map":
            if depth == _EVENT_DEPTH + 2 and top in ("sourceList", "destinationList"):
                self.party = ["source" if top == "sourceList" else "destination", None, None]
            if opened is not None and opened.lower() == "extension":
                self.optel = [None, None]

    def close(self, token: str, depth: int, top: str | None, closed: str | None) -> None:
        if token != "end_map":
            return
        party = self.party
        if depth == _EVENT_DEPTH + 2 and top in ("sourceList", "destinationList") and party[0]:
            self.parties.append((party[0], party[1], party[2]))
            self.party = [None, None, None]
        if closed is not None and closed.lower() == "extension":
            kind = (self.optel[0] or "").strip().upper()
            if kind == "BATCH":
                self.lots[3] = self.lots[3] or self.optel[1]
            elif kind == "EXPIRY":
                self.expiries[3] = self.expiries[3] or self.optel[1]
            self.optel = [None, None]

    def nested(
        self, key: str, text: str | None, depth: int, top: str | None, path: list[str | None]
    ) -> None:
        """A scalar inside one of the event's values (`top`)."""
        if top == "ilmd":
            if key == "lotNumber":
                self.lots[0] = self.lots[0] or _clean(text)
            elif key == "itemExpirationDate":
                self.expiries[0] = self.expiries[0] or _clean(text)
        elif top == "readPoint" or top == "bizLocation":
            if key == "id" and depth == _EVENT_DEPTH + 1:
                self.row[READ_POINT if top == "readPoint" else BIZ_LOCATION] = _clean(text)
        elif top == "sourceList" or top == "destinationList":
            if depth == _EVENT_DEPTH + 2:
                if key == "type":
                    self.party[1] = cbv_word(text)
                elif key == self.party[0]:
                    self.party[2] = _clean(text)
        else:
            _other_source(key, text, path, self.lots, self.expiries, self.optel)

    def end(self, stager: Stager) -> None:
        kind = self.type or "(no type)"
        index = stager.end_event(kind)
        row = self.row
        if kind not in _READ_TYPES or (
            kind == "TransformationEvent" and row[BIZ_STEP] != "commissioning"
        ):
            stager.skip()
            return
        row[LOT] = first_source(self.lots)
        row[EXPIRY] = first_source(self.expiries)
        stager.read(index, kind, row, self.parties)


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    return text.strip() or None


def _other_source(
    key: str,
    text: str | None,
    path: list[str | None],
    lots: list[str | None],
    expiries: list[str | None],
    optel: list[str | None],
) -> None:
    """A scalar anywhere else in the event: `lotNumber` / `itemExpirationDate`, SAP's
    `SAPExtension.ObjAttributes` `LOTNO` / `DATEX`, an Optel extension's name or value."""
    if key == "lotNumber":
        lots[1] = lots[1] or _clean(text)
    elif key == "itemExpirationDate":
        expiries[1] = expiries[1] or _clean(text)
    elif (upper := key.upper()) in ("LOTNO", "DATEX"):
        if (
            len(path) >= 2
            and (path[-1] or "").lower() == "objattributes"
            and (path[-2] or "").lower() == "sapextension"
        ):
            if upper == "LOTNO":
                lots[2] = lots[2] or _clean(text)
            else:
                expiries[2] = expiries[2] or _clean(text)
    elif path and (path[-1] or "").lower() == "extension":
        if key in ("name", "@name"):
            optel[0] = text
        elif key in ("value", "@value", "#text"):
            optel[1] = _clean(text)


class _DepthExceeded(Exception):
    pass


def _locate(source: _Source, *, deeper: bool) -> int | None:
    """The line where the parser fails (or, `deeper`, where the nesting first passes the
    limit): parse again up to the chunk where it happened, then that chunk a byte at a
    time, counting lines (only on this error path)."""
    tokens = ijson.utils.sendable_list()
    coro = ijson.basic_parse_coro(tokens, use_float=True)
    again = _Source(source.path)
    depth, line, done = 0, 1, 0
    try:
        while done < source.last:
            chunk = again.read(min(MAX_TEXT, source.last - done))
            if not chunk:
                return None
            coro.send(chunk)
            for token, _ in tokens:
                depth += (token == "start_map" or token == "start_array") - (
                    token == "end_map" or token == "end_array"
                )
            del tokens[:]
            line += chunk.count(b"\n")
            done += len(chunk)
        chunk = again.read(MAX_TEXT)
        for i in range(len(chunk)):
            try:
                coro.send(chunk[i : i + 1])
            except ijson.JSONError:
                return line
            for token, _ in tokens:
                depth += (token == "start_map" or token == "start_array") - (
                    token == "end_map" or token == "end_array"
                )
                if deeper and depth > MAX_DEPTH:
                    return line
            del tokens[:]
            line += chunk[i] == 0x0A
        try:
            coro.close()
        except ijson.JSONError:
            return line
        return line
    except (ijson.JSONError, EpcisRejected):
        return None
    finally:
        again.close()
