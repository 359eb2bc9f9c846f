"""The token reader of EPCIS 2.0 JSON-LD (SPEC §6), and what both JSON-LD readers share.

`read_tokens` reads ijson's token stream top-down — the document object,
`epcisBody`, `eventList`, each event (`_event`), whatever no rule reads passed over
by `skip` — with its nesting counted against the limit, so any document of any
size and layout (prefixed keys, keys in any order, one event with millions of EPCs)
is read with flat memory.  `connectors.epcis_jsonld` reads the usual layout faster
(events built in C) and comes here for everything else, and to say what is wrong
with a document that is not JSON (`locate` finds the line).

Shared: the keys of an event by local name (`key`), the bytes as the parser reads
them (`Source`: the bounded-input guard, byte-order marks), what one event says
(`Found`) and the lot sources (`lot_source`, `optel_source`).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

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
)
from schemas.shipping import DocumentInfo

READ_TYPES = frozenset({"ObjectEvent", "AggregationEvent", "TransformationEvent"})
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
SCALARS = frozenset({"string", "number", "boolean", "null"})
STARTS = frozenset({"start_map", "start_array"})

# What an event's key is (by its local name), so each value is read by the code for it.
(
    IGNORED,  # a scalar no rule reads; a container searched for lot sources
    TYPE,
    ACTION_,
    BIZ_STEP_,
    PARENT_,
    STAGED_EPCS,  # epcList, childEPCs, outputEPCList
    DROPPED_EPCS,  # inputEPCList: read past, never staged
    READ_POINT_,
    BIZ_LOCATION_,
    SOURCES,
    DESTINATIONS,
    ILMD,
    LOT_,
    EXPIRY_,
    PASSED,  # EPCIS containers that hold no lot source: read past
) = range(15)
EVENT_KEYS = {
    "type": TYPE,
    "action": ACTION_,
    "bizStep": BIZ_STEP_,
    "parentID": PARENT_,
    "epcList": STAGED_EPCS,
    "childEPCs": STAGED_EPCS,
    "outputEPCList": STAGED_EPCS,
    "inputEPCList": DROPPED_EPCS,
    "readPoint": READ_POINT_,
    "bizLocation": BIZ_LOCATION_,
    "sourceList": SOURCES,
    "destinationList": DESTINATIONS,
    "ilmd": ILMD,
    "lotNumber": LOT_,
    "itemExpirationDate": EXPIRY_,
    **dict.fromkeys(
        (
            "bizTransactionList",
            "quantityList",
            "childQuantityList",
            "inputQuantityList",
            "outputQuantityList",
            "sensorElementList",
            "certificationInfo",
            "errorDeclaration",
            "persistentDisposition",
            "@context",
        ),
        PASSED,
    ),
}
CODES: dict[str, tuple[str, int]] = {}  # raw key -> (local name, code)


def key(raw: str) -> tuple[str, int]:
    """The local name of a key (after any `prefix:`; `@type` is `type`) and its code."""
    found = CODES.get(raw)
    if found is None:
        local = raw.rpartition(":")[2]
        if local in ("@type", "@id"):
            local = local[1:]
        found = (local, EVENT_KEYS.get(local, IGNORED))
        if len(CODES) < 4096:  # a document cannot grow the cache without bound
            CODES[raw] = found
    return found


class Source:
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
        # the fast path's bound on one event: `read` raises `Fallback` when more than
        # `event_limit` bytes were read since `mark` (where the last event ended)
        self.event_limit: int | None = None
        self.mark = 0

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
        if self.event_limit is not None and self.read_bytes - self.mark > self.event_limit:
            raise Fallback
        return chunk


def text_of(token: str, value: object) -> str | None:
    """A scalar as text (a number as written, e.g. 20210930); None for null and booleans."""
    if token == "string":
        return value  # type: ignore[return-value]
    if token != "number" or isinstance(value, bool):
        return None
    return str(value)


class DepthExceeded(Exception):
    pass


class Fallback(Exception):
    """The fast path cannot read this document: the token reader reads it (and says what
    is wrong with it, if anything)."""


def clean(text: str | None) -> str | None:
    if text is None:
        return None
    return text.strip() or None


class Found:
    """What one event says, as its keys arrive (in any order): its type, the row of
    `connectors.epcis_stage` (action, bizStep, parentID, locations, lot, expiry), its
    sources and destinations, and the lot and expiry of each source (§6 order: ILMD,
    the event itself, SAP, Optel)."""

    __slots__ = ("type", "row", "parties", "lots", "expiries")

    def __init__(self) -> None:
        self.type: str | None = None
        self.row: list[str | None] = [None] * 7
        self.parties: list[Party] = []
        self.lots: list[str | None] = [None] * 4
        self.expiries: list[str | None] = [None] * 4

    def scalar(self, code: int, text: str | None) -> None:
        """A scalar directly in the event, by its key's code."""
        if code == TYPE:
            self.type = text
        elif code == ACTION_:
            self.row[ACTION] = clean(text)
        elif code == BIZ_STEP_:
            self.row[BIZ_STEP] = cbv_word(text)
        elif code == PARENT_:
            self.row[PARENT] = text
        elif code == LOT_:
            self.lots[1] = self.lots[1] or clean(text)
        elif code == EXPIRY_:
            self.expiries[1] = self.expiries[1] or clean(text)

    def stage(self, stager: Stager) -> None:
        """The event ended: staged when it is read (§6 *Events read*), else skipped."""
        kind = self.type or "(no type)"
        index = stager.end_event(kind)
        row = self.row
        if kind not in READ_TYPES or (
            kind == "TransformationEvent" and row[BIZ_STEP] != "commissioning"
        ):
            stager.skip()
            return
        row[LOT] = first_source(self.lots)
        row[EXPIRY] = first_source(self.expiries)
        stager.read(index, kind, row, self.parties)


def lot_source(
    local: str,
    text: str | None,
    path: list[str],
    lots: list[str | None],
    expiries: list[str | None],
    optel: list[str | None],
    ilmd: bool,
) -> None:
    """One scalar (`local`: its key; `path`: the keys above it) as a lot source: in the ILMD
    `lotNumber` / `itemExpirationDate` (source 0); elsewhere the same names (1), SAP's
    `SAPExtension.ObjAttributes` `LOTNO` / `DATEX` (2), or an Optel extension object's
    `name` / value (`optel`, resolved by `_optel_source` when the object ends)."""
    if local == "lotNumber":
        source = 0 if ilmd else 1
        lots[source] = lots[source] or text
    elif local == "itemExpirationDate":
        source = 0 if ilmd else 1
        expiries[source] = expiries[source] or text
    elif ilmd:
        return
    elif (upper := local.upper()) in ("LOTNO", "DATEX"):
        if (
            len(path) >= 2
            and path[-1].lower() == "objattributes"
            and (path[-2].lower() == "sapextension")
        ):
            target = lots if upper == "LOTNO" else expiries
            target[2] = target[2] or text
    elif path[-1].lower() == "extension":
        if local in ("name", "@name"):
            optel[0] = text
        elif local in ("value", "@value", "#text"):
            optel[1] = text


def optel_source(
    optel: list[str | None], lots: list[str | None], expiries: list[str | None]
) -> None:
    kind = (optel[0] or "").upper()
    if kind == "BATCH":
        lots[3] = lots[3] or optel[1]
    elif kind == "EXPIRY":
        expiries[3] = expiries[3] or optel[1]


def read_tokens(source: Source, stager: Stager, info: DocumentInfo, batch_size: int) -> None:
    """Read the token stream top-down: the document object, `epcisBody`, `eventList`,
    each event (`_event`); whatever no rule reads is passed over by `_skip`."""
    tokens = iter(ijson.basic_parse(source, use_float=True, buf_size=MAX_TEXT))
    seen: dict[str, object] = {"type": None, "event_lists": 0}
    try:
        first = next(tokens, None)
        if first is None:
            raise EpcisRejected("the file is empty: no JSON")
        if first[0] != "start_map":
            raise EpcisRejected(
                "not an EPCIS document: the JSON is an array or a value, not an EPCISDocument "
                "object"
            )
        for token, value in tokens:  # the document's keys
            if token == "end_map":
                break
            local = key(value)[0]
            token, value = next(tokens)
            if local == "epcisBody" and token == "start_map":
                _body(tokens, stager, batch_size, seen)
            elif token in STARTS:
                skip(tokens, 2)
            elif local == "type":
                seen["type"] = text_of(token, value)
            elif local == "sender" and info.sbdh_sender is None:
                info.sbdh_sender = clean(text_of(token, value))
            elif local == "schemaVersion":
                info.schema_version = text_of(token, value)
        for _ in tokens:  # nothing may follow the document (yajl says what it finds)
            pass
    except DepthExceeded:
        raise depth_rejected(locate(source, deeper=True)) from None
    except ijson.JSONError as err:
        # yajl's C backend says it in bytes: shown as text, its first line only
        said = err.args[0] if err.args else ""
        text = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
        message = text.strip().splitlines()
        first_line = message[0] if message else type(err).__name__
        line = locate(source, deeper=False)
        at = f" at line {line}" if line else ""
        if "invalid bytes in utf8" in first_line.lower():  # §8: not text in its encoding
            raise EpcisRejected(
                f"the file is not text in its encoding (UTF-8): invalid UTF-8 bytes{at}; "
                "ask the sender for the document as UTF-8 text"
            ) from err
        raise EpcisRejected(
            f"not JSON{at}: {first_line}; ask the sender to correct the document"
        ) from err
    doc_type = seen["type"]
    if doc_type is not None and doc_type != "EPCISDocument":
        raise EpcisRejected(
            f"not an EPCIS document: the JSON's type is {str(doc_type)[:80]!r}, expected "
            "EPCISDocument (with epcisBody.eventList)"
        )
    if doc_type is None and not seen["event_lists"]:
        raise EpcisRejected(
            "not an EPCIS document: the JSON has neither the type EPCISDocument nor an "
            "epcisBody.eventList"
        )


def skip(tokens: Iterator[tuple[str, object]], depth: int) -> None:
    """Pass over the rest of a container opened at `depth` (its nesting still counts)."""
    level = depth
    for token, _ in tokens:
        if token == "start_map" or token == "start_array":
            level += 1
            if level > MAX_DEPTH:
                raise DepthExceeded
        elif token == "end_map" or token == "end_array":
            level -= 1
            if level < depth:
                return


def _body(
    tokens: Iterator[tuple[str, object]], stager: Stager, batch_size: int, seen: dict[str, object]
) -> None:
    """`epcisBody` (depth 2): its `eventList` (depth 3) of event objects (depth 4)."""
    for token, value in tokens:
        if token == "end_map":
            return
        local = key(value)[0]  # type: ignore[arg-type]
        token, value = next(tokens)
        if token not in STARTS:
            continue
        if local != "eventList" or token != "start_array":
            skip(tokens, 3)
            continue
        seen["event_lists"] = int(seen["event_lists"]) + 1  # type: ignore[call-overload]
        for token, _ in tokens:
            if token == "end_array":
                break
            if token == "start_map":
                _event(tokens, stager)
                if len(stager.epc_text) >= batch_size or len(stager.events) >= batch_size:
                    stager.flush()
            elif token == "start_array":
                skip(tokens, 4)


def _event(tokens: Iterator[tuple[str, object]], stager: Stager) -> None:
    """One event object (depth 4), its keys in any order; its EPC lists straight into the
    staging batch, the rest into a `Found`."""
    found = Found()
    epc_text = stager.epc_text
    for token, value in tokens:
        if token == "end_map":
            break
        local, code = key(value)  # type: ignore[arg-type]
        token, value = next(tokens)
        if token in SCALARS:
            if code != IGNORED:
                found.scalar(code, text_of(token, value))
        elif code == STAGED_EPCS and token == "start_array":  # (depth 5)
            for token, value in tokens:
                if token == "string":
                    epc_text.append(value)  # type: ignore[arg-type]
                elif token == "end_array":
                    break
                elif token in STARTS:
                    skip(tokens, 6)
        elif code in (READ_POINT_, BIZ_LOCATION_):
            where = _location(tokens, token)
            found.row[READ_POINT if code == READ_POINT_ else BIZ_LOCATION] = where
        elif code in (SOURCES, DESTINATIONS):
            role = "source" if code == SOURCES else "destination"
            _parties(tokens, token, role, found.parties)
        elif code == ILMD:
            _search(tokens, 5, [local], found.lots, found.expiries, ilmd=True)
        elif code in (DROPPED_EPCS, PASSED):
            skip(tokens, 5)
        else:  # anywhere else in the event: lot sources (§6)
            _search(tokens, 5, [local], found.lots, found.expiries, ilmd=False)
    found.stage(stager)


def _location(tokens: Iterator[tuple[str, object]], opened: str) -> str | None:
    """`readPoint` / `bizLocation` (depth 5): its `id`."""
    found: str | None = None
    if opened != "start_map":
        skip(tokens, 5)
        return None
    for token, value in tokens:
        if token == "end_map":
            return found
        local = key(value)[0]  # type: ignore[arg-type]
        token, value = next(tokens)
        if token in STARTS:
            skip(tokens, 6)
        elif local == "id" and found is None:
            found = clean(text_of(token, value))
    return found


def _parties(
    tokens: Iterator[tuple[str, object]], opened: str, role: str, parties: list[Party]
) -> None:
    """`sourceList` / `destinationList` (depth 5): objects with `type` and `source` /
    `destination`."""
    if opened != "start_array":
        skip(tokens, 5)
        return
    for token, _ in tokens:
        if token == "end_array":
            return
        if token != "start_map":
            if token in STARTS:
                skip(tokens, 6)
            continue
        kind: str | None = None
        ident: str | None = None
        for token, value in tokens:
            if token == "end_map":
                break
            local = key(value)[0]  # type: ignore[arg-type]
            token, value = next(tokens)
            if token in STARTS:
                skip(tokens, 7)
            elif local == "type":
                kind = cbv_word(text_of(token, value))
            elif local == role:
                ident = clean(text_of(token, value))
        parties.append((role, kind, ident))


def _search(
    tokens: Iterator[tuple[str, object]],
    depth: int,
    path: list[str],
    lots: list[str | None],
    expiries: list[str | None],
    *,
    ilmd: bool,
) -> None:
    """Read past a container of the event (opened at `depth`, under the keys of `path`)
    taking its lot sources: in the ILMD `lotNumber` / `itemExpirationDate` (source 0);
    elsewhere the same names (source 1), SAP's `SAPExtension.ObjAttributes` `LOTNO` /
    `DATEX` (2), an Optel `extension` object's `name` and value (3)."""
    optel: list[str | None] = [None, None]
    for token, value in tokens:
        if token == "end_map" or token == "end_array":
            break
        if token == "map_key":
            local = key(value)[0]  # type: ignore[arg-type]
            token, value = next(tokens)
        else:  # an item of an array: under the array's key
            local = path[-1]
        if token in STARTS:
            if depth + 1 > MAX_DEPTH:
                raise DepthExceeded
            _search(tokens, depth + 1, [*path, local], lots, expiries, ilmd=ilmd)
            continue
        if token == "null" or token == "boolean":
            continue
        lot_source(local, clean(text_of(token, value)), path, lots, expiries, optel, ilmd)
    optel_source(optel, lots, expiries)


def locate(source: Source, *, deeper: bool) -> int | None:
    """The line where the parser fails (or, `deeper`, where the nesting first passes the
    limit): parse again up to the chunk where it happened, then that chunk a byte at a
    time, counting lines (only on this error path)."""
    tokens = ijson.utils.sendable_list()
    coro = ijson.basic_parse_coro(tokens, use_float=True)
    again = Source(source.path)
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
