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

Streamed with ijson's C backend (yajl), two ways to one result: the usual layout (a
plain head: `type`, then `epcisBody.eventList` with unprefixed keys) has each event
object built in C and read here (`_built_event`), no token reaching Python; anything
else — prefixed keys, an event larger than `FAST_EVENT_LIMIT` (a built event holds its
EPC list whole), nesting over the limit, text that is not JSON — is read token by
token (`connectors.epcis_jsonld_tokens`), where memory does not grow with the number
of EPCs.  Bounded input (§8): NUL bytes (UTF-16 without a byte-order mark; with one,
the text is transcoded to UTF-8), a string or other value over 1 MiB (`ByteGuard`,
before the parser sees it) and nesting over 64 levels quarantine the file with the
line and the limit; so do text that is not JSON (with the line of the error) and
JSON that is not an EPCIS document.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import duckdb
import ijson

from connectors import epcis_jsonld_tokens as token_reader
from connectors.epcis_jsonld_tokens import (
    BIZ_LOCATION_,
    CODES,
    DESTINATIONS,
    DROPPED_EPCS,
    EVENT_KEYS,
    IGNORED,
    ILMD,
    PASSED,
    READ_POINT_,
    READ_TYPES,
    SOURCES,
    STAGED_EPCS,
    STARTS,
    DepthExceeded,
    Fallback,
    Found,
    Source,
    clean,
    key,
    lot_source,
    optel_source,
    skip,
    text_of,
)
from connectors.epcis_stage import (
    BIZ_LOCATION,
    MAX_DEPTH,
    MAX_TEXT,
    READ_POINT,
    EpcisRejected,
    Party,
    Stager,
    cbv_word,
    staging,
)
from schemas.shipping import DocumentInfo


def stage_jsonld(
    con: duckdb.DuckDBPyConnection, path: Path, batch_size: int = 250_000
) -> DocumentInfo:
    """Parse the JSON-LD document `path` into the staging tables of `con` (replaced) and
    describe it.  Raises `EpcisRejected` when the document must be quarantined."""
    info = DocumentInfo(file=path.name, namespace="", schema_version=None, syntax="jsonld")
    if path.stat().st_size <= 1 << 16 and not path.read_bytes().strip(b" \t\r\n\xef\xbb\xbf"):
        raise EpcisRejected("the file is empty: no JSON")
    head = _head(path)
    if head is not None:  # the usual layout: events built in C, no token reaches Python
        fast = DocumentInfo(file=path.name, namespace="", schema_version=None, syntax="jsonld")
        fast.sbdh_sender, fast.schema_version = head.sender, head.schema_version
        source = Source(path)
        source.event_limit = FAST_EVENT_LIMIT
        try:
            with staging(con):
                return _stage_fast(con, source, fast, batch_size, head)
        except Fallback:
            pass  # an event too large to build whole, or something to report: token by token
        finally:
            source.close()
    source = Source(path)
    try:
        with staging(con):
            return _stage(con, source, info, batch_size)
    finally:
        source.close()


def _stage(
    con: duckdb.DuckDBPyConnection, source: Source, info: DocumentInfo, batch_size: int
) -> DocumentInfo:
    stager = Stager(con)
    try:
        token_reader.read_tokens(source, stager, info, batch_size)
    except BaseException:
        stager.abandon()
        raise
    return stager.finish(info)


# ------------------------------------------------------------------ the fast path
#
# ijson's C backend builds each event object (`items` at `epcisBody.eventList.item`)
# without handing a single token to Python: several times faster than reading tokens.
# It is taken when the document's head (before the events) is plain — an object with
# `type` EPCISDocument and the keys `epcisBody` and `eventList` unprefixed — and left for
# the token reader (`Fallback`) when an event's text passes `FAST_EVENT_LIMIT` (memory
# must not grow with the number of EPCs: a built event holds its EPC list whole), when
# anything nests deeper than the limit, or when the text is not JSON (the token reader
# names the line).

FAST_EVENT_LIMIT = 4 << 20  # bytes of one event the fast path builds whole
_HEAD_LIMIT = 4 << 20  # bytes of the document before its events


class _Head(NamedTuple):
    sender: str | None
    schema_version: str | None


def _head(path: Path) -> _Head | None:
    """The document's fields before `epcisBody.eventList`, if its head is plain (above)."""
    source = Source(path)
    tokens = iter(ijson.basic_parse(source, use_float=True, buf_size=1 << 16))
    fields: dict[str, str | None] = {}
    try:
        first = next(tokens, None)
        if first is None or first[0] != "start_map":
            return None
        for token, value in tokens:
            if token != "map_key" or source.read_bytes > _HEAD_LIMIT:
                return None
            raw = value
            token, value = next(tokens)
            if raw == "epcisBody":
                if token != "start_map":
                    return None
                token, value = next(tokens)
                if (token, value) != ("map_key", "eventList"):
                    return None
                token, value = next(tokens)
                if token != "start_array" or fields.get("type") != "EPCISDocument":
                    return None
                return _Head(clean(fields.get("sender")), fields.get("schemaVersion"))
            if token in STARTS:
                skip(tokens, 2)
            elif raw in ("type", "@type", "sender", "schemaVersion"):
                fields[raw.removeprefix("@")] = text_of(token, value)
        return None
    except (ijson.JSONError, EpcisRejected, DepthExceeded, StopIteration):
        return None  # the token reader says what is wrong
    finally:
        source.close()


def _stage_fast(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    info: DocumentInfo,
    batch_size: int,
    head: _Head,
) -> DocumentInfo:
    stager = Stager(con)
    try:
        events = ijson.items(source, "epcisBody.eventList.item", use_float=True, buf_size=MAX_TEXT)
        for event in events:
            source.mark = source.read_bytes
            if isinstance(event, dict):
                _built_event(event, stager)
                if len(stager.epc_text) >= batch_size or len(stager.events) >= batch_size:
                    stager.flush()
            elif isinstance(event, list) and _too_deep(event, 5):
                raise Fallback
    except (ijson.JSONError, DepthExceeded) as err:
        stager.abandon()
        raise Fallback from err
    except BaseException:
        stager.abandon()
        raise
    if head.sender is None:  # a `sender` after the events (rare): one more pass, in C
        info.sbdh_sender = _later_sender(source.path)
    return stager.finish(info)


def _later_sender(path: Path) -> str | None:
    source = Source(path)
    try:
        for value in ijson.items(source, "sender", buf_size=MAX_TEXT):
            return clean(value if isinstance(value, str) else None)
        return None
    finally:
        source.close()


def _too_deep(value: object, depth: int) -> bool:
    """Whether a built value (at `depth`) nests deeper than the limit."""
    if depth > MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return any(_too_deep(v, depth + 1) for v in value.values() if isinstance(v, dict | list))
    if isinstance(value, list):
        return any(_too_deep(v, depth + 1) for v in value if isinstance(v, dict | list))
    return False


def _scalar(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _built_event(event: dict[str, object], stager: Stager) -> None:
    """One event built by the C backend, read as the token reader reads one."""
    if not _plain_event(event, stager):
        _any_event(event, stager)


# The plain event (`_plain_event`): what each of its keys is, written unprefixed.
(_P_SKIP, _P_TYPE, _P_ACTION, _P_STEP, _P_PARENT, _P_EPCS, _P_WHERE, _P_ILMD, _P_PARTY,
 _P_NOTE, _P_SLOW) = range(11)  # fmt: skip
_PLAIN_KEYS: dict[str, int] = {
    "type": _P_TYPE,
    "action": _P_ACTION,
    "bizStep": _P_STEP,
    "parentID": _P_PARENT,
    "epcList": _P_EPCS,
    "childEPCs": _P_EPCS,
    "outputEPCList": _P_EPCS,
    "readPoint": _P_WHERE,
    "bizLocation": _P_WHERE,
    "ilmd": _P_ILMD,
    "sourceList": _P_PARTY,
    "destinationList": _P_PARTY,
    # containers read past (their nesting still counts)
    "inputEPCList": _P_SKIP,
    **{raw: _P_SKIP for raw, code in EVENT_KEYS.items() if code == PASSED and ":" not in raw},
}
_OTHER_KEYS: dict[str, int] = {}  # any other key: _P_NOTE if no rule reads it, else _P_SLOW


def _plain_code(raw: str) -> int:
    code = _OTHER_KEYS.get(raw)
    if code is None:
        code = _P_NOTE if key(raw)[1] == IGNORED else _P_SLOW
        if len(_OTHER_KEYS) < 4096:  # a document cannot grow the cache without bound
            _OTHER_KEYS[raw] = code
    return code


_CONTAINERS = frozenset({dict, list})
_STR = frozenset({str})
_CBV_WORDS: dict[str, str | None] = {}


def _flat(values: object) -> bool:
    """Whether no item of `values` (a dict's values or a list) is a container."""
    return _CONTAINERS.isdisjoint(set(map(type, values)))  # type: ignore[call-overload]


def _cbv_cached(text: str | None) -> str | None:
    if text is None:
        return None
    word = _CBV_WORDS.get(text, "")
    if word == "":
        word = cbv_word(text)
        if len(_CBV_WORDS) < 4096:  # a document cannot grow the cache without bound
            _CBV_WORDS[text] = word
    return word


def _plain_event(event: dict[str, object], stager: Stager) -> bool:
    """The usual event, read with no per-key detour: unprefixed keys of the known kinds, scalars
    where the rules read scalars, containers at most two levels deep, lot and expiry only in
    the ILMD.  Anything else (a prefixed key the rules read, a lot source outside the ILMD, a
    scalar where a container is read or the reverse, deeper nesting) returns False before
    anything is staged: `_any_event` reads that event, with the same result."""
    kind: str | None = None
    action = step = parent = lot = expiry = kind
    where: dict[str, str | None] = {}
    parties: list[Party] = []
    lists: list[list[str]] = []
    plain = _PLAIN_KEYS
    for raw, value in event.items():
        code = plain.get(raw)
        if code is None:
            code = _plain_code(raw)
        vtype = type(value)
        if code == _P_NOTE:  # a scalar no rule reads (a container is searched for lots)
            if vtype is dict or vtype is list:
                return False
        elif code == _P_SLOW:
            return False
        elif code == _P_EPCS:
            if vtype is not list or not set(map(type, value)) <= _STR:  # type: ignore[call-overload]
                return False
            lists.append(value)  # type: ignore[arg-type]
        elif code < _P_EPCS:  # type, action, bizStep, parentID; or a container read past
            if code == _P_SKIP:
                if vtype is dict:
                    if not _flat(value.values()):  # type: ignore[attr-defined]
                        return False
                elif vtype is list:
                    for item in value:  # type: ignore[attr-defined]
                        itype = type(item)
                        if (itype is dict and not _flat(item.values())) or (
                            itype is list and not _flat(item)
                        ):
                            return False
                continue
            if vtype is dict or vtype is list:
                return False
            text: str | None = value if vtype is str else _scalar(value)  # type: ignore[assignment]
            if code == _P_TYPE:
                kind = text
            elif code == _P_ACTION:
                action = clean(text)
            elif code == _P_STEP:
                step = _cbv_cached(text)
            else:
                parent = text
        elif code == _P_WHERE:
            if vtype is not dict:
                return False
            if len(value) == 1 and type(ident := value.get("id")) is str:  # type: ignore[arg-type,attr-defined]
                where[raw] = ident.strip() or None  # the usual {"id": "urn:..."}
                continue
            if not _flat(value.values()):  # type: ignore[attr-defined]
                return False
            where[raw] = clean(_scalar(_local_get(value, "id")))  # type: ignore[arg-type]
        elif code == _P_ILMD:
            if vtype is not dict or not _flat(value.values()):  # type: ignore[attr-defined]
                return False
            for name, item in value.items():  # type: ignore[attr-defined]
                if item is None or isinstance(item, bool):
                    continue
                local = key(name)[0]
                if local == "lotNumber":
                    lot = lot or clean(_scalar(item))
                elif local == "itemExpirationDate":
                    expiry = expiry or clean(_scalar(item))
        else:  # sourceList, destinationList
            if vtype is not list:
                return False
            role = "source" if raw == "sourceList" else "destination"
            for item in value:  # type: ignore[attr-defined]
                if type(item) is dict:
                    if not _flat(item.values()):
                        return False
                    parties.append(
                        (role, _cbv_cached(_scalar(_local_get(item, "type"))),
                         clean(_scalar(_local_get(item, role))))
                    )  # fmt: skip
                elif type(item) is list and not _flat(item):
                    return False
    for epcs in lists:
        stager.epc_text.extend(epcs)
    kind = kind or "(no type)"
    index = stager.end_event(kind)
    if kind not in READ_TYPES or (kind == "TransformationEvent" and step != "commissioning"):
        stager.skip()
        return True
    row = [action, step, parent, where.get("readPoint"), where.get("bizLocation"), lot, expiry]
    stager.read(index, kind, row, parties)
    return True


def _any_event(event: dict[str, object], stager: Stager) -> None:
    """Any event built by the C backend, key by key as the token reader reads one."""
    found = Found()
    codes = CODES
    for raw, value in event.items():
        known = codes.get(raw)
        local, code = known if known is not None else key(raw)
        if code == STAGED_EPCS and type(value) is list:
            if set(map(type, value)) <= {str}:
                stager.epc_text.extend(value)
            else:
                if _too_deep(value, 5):
                    raise Fallback
                stager.epc_text.extend(v for v in value if isinstance(v, str))
        elif isinstance(value, dict | list):
            if _too_deep(value, 5):
                raise Fallback
            if code in (READ_POINT_, BIZ_LOCATION_):
                where = clean(_scalar(_local_get(value, "id"))) if isinstance(value, dict) else None
                found.row[READ_POINT if code == READ_POINT_ else BIZ_LOCATION] = where
            elif code in (SOURCES, DESTINATIONS):
                role = "source" if code == SOURCES else "destination"
                for item in value if isinstance(value, list) else ():
                    if isinstance(item, dict):
                        found.parties.append(
                            (role, cbv_word(_scalar(_local_get(item, "type"))),
                             clean(_scalar(_local_get(item, role))))
                        )  # fmt: skip
            elif code == ILMD:
                _search_built(value, [local], found.lots, found.expiries, ilmd=True)
            elif code not in (DROPPED_EPCS, PASSED, STAGED_EPCS):
                _search_built(value, [local], found.lots, found.expiries, ilmd=False)
        elif code != IGNORED:
            found.scalar(code, _scalar(value))
    found.stage(stager)


def _local_get(value: dict[str, object], name: str) -> object:
    """The value of the first key whose local name is `name`."""
    for raw, item in value.items():
        if key(raw)[0] == name:
            return item
    return None


def _search_built(
    value: object,
    path: list[str],
    lots: list[str | None],
    expiries: list[str | None],
    *,
    ilmd: bool,
) -> None:
    """`_search` over a built value: the lot sources in it, in document order."""
    items = value.items() if isinstance(value, dict) else ((path[-1], v) for v in value)  # type: ignore[attr-defined]
    optel: list[str | None] = [None, None]
    for raw, item in items:
        local = key(raw)[0] if isinstance(value, dict) else raw
        if isinstance(item, dict | list):
            _search_built(item, [*path, local], lots, expiries, ilmd=ilmd)
            continue
        if item is None or isinstance(item, bool):
            continue
        lot_source(local, clean(_scalar(item)), path, lots, expiries, optel, ilmd)
    optel_source(optel, lots, expiries)
