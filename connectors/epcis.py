"""Streaming, hardened reader of EPCIS documents (SPEC §6): TraceLink shipping files.

`stage_document(con, path)` reads one document as a stream into the staging tables
of `con` (`connectors.epcis_stage`: one format whatever the syntax) and returns a
`DocumentInfo` (counts, document sender, sender candidates).  `shipping_*.json` and
`shipping_*.jsonld` are EPCIS 2.0 JSON-LD (`connectors.epcis_jsonld`); every other
name is XML, read here:

- EPCIS 1.2 (`urn:epcglobal:epcis:xsd:1`, schemaVersion 1.0 to 1.2, with or
  without the SBDH envelope) and EPCIS 2.0 (`urn:epcglobal:epcis:xsd:2`) XML.
  Event fields are read by local name in no namespace or an EPCIS namespace
  (1.2 keeps sourceList/destinationList/ilmd inside `<extension>`, 2.0 does
  not); the SBDH `Identifier` and the lot sources by local name in any namespace.
- Events read: ObjectEvents, AggregationEvents and TransformationEvents whose
  bizStep is commissioning (their outputEPCList; an inputEPCList is never staged).
  Other events (other TransformationEvents, QuantityEvent, TransactionEvent,
  AssociationEvent, also inside a 1.2 `<extension>` wrapper, and any other element
  of such a wrapper) are counted and skipped, each in its place (an event's index
  counts every skipped event before it); unknown extension elements of an event are
  ignored.  An EPC list is an event's only as the event's own child (the list of an
  unknown element is no one's).
- Lot and expiry of a commissioning: the ILMD's `lotNumber` / `itemExpirationDate`;
  else such an element anywhere else in the event; else SAP's
  `SAPExtension/ObjAttributes` `LOTNO` / `DATEX`; else Optel's `extension`
  elements named `BATCH` / `EXPIRY` — each of the two its own first source.
- Hardening: no DTD loading, no entity resolution, no network, no XInclude: an
  include element is never followed and the document is read as if it were not
  there (its fallback neither: no event, EPC, lot or skipped event of it counts).  A DOCTYPE rejects the
  whole document before its body is parsed (`EpcisRejected`), as do XML that is
  not well-formed, a root that is not an EPCISDocument, an undefined entity.
- Bounded input (§8): a NUL byte (not text in its encoding), more than 1 MiB
  without markup (a text node, comment or attribute value over the limit,
  `ByteGuard`), nesting deeper than 64 levels (checked on the open elements at
  the end of every chunk and on the last chunk whole; libxml2 refuses 256) — each
  with the line and the limit in the reason.
- Speed and flat memory: lxml's incremental parser (`XMLPullParser`, what
  `iterparse` is built on, fed 1 MiB at a time) hands Python only the finished
  EPC lists and events (a tag filter in C); the texts of an EPC list are taken
  with one `map` (no per-EPC Python code); each finished event is read into a
  row; after each chunk the complete EPC texts of a list still open are taken and
  everything finished is deleted from the tree (`_prune`), so neither one event
  with millions of EPCs nor a large header ever sits whole in the tree.  Texts and
  rows go to the writer thread of `connectors.epcis_stage` in batches.
"""

from __future__ import annotations

import itertools
import re
from operator import attrgetter
from pathlib import Path

import duckdb
from lxml import etree

from connectors.csv_limits import MAX_FILE_BYTES
from connectors.epcis_stage import (
    ACTION,
    BIZ_LOCATION,
    BIZ_STEP,
    EXPIRY,
    LOT,
    MAX_DEPTH,
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

__all__ = ["EpcisRejected", "cbv_word", "check_prolog", "stage_document"]

EPCIS_NAMESPACES = ("urn:epcglobal:epcis:xsd:1", "urn:epcglobal:epcis:xsd:2")
# TransformationEvent is read only when its bizStep is commissioning
READ_EVENTS = ("ObjectEvent", "AggregationEvent", "TransformationEvent")
SKIPPED_EVENTS = ("QuantityEvent", "TransactionEvent", "AssociationEvent")
EVENT_TYPES = frozenset(READ_EVENTS + SKIPPED_EVENTS)
JSONLD_SUFFIXES = (".json", ".jsonld")
_CHUNK = 1 << 20  # bytes fed to the parser at a time (at most ByteGuard's limit)
_PROLOG_CHUNK = 1 << 16
_PROLOG_LIMIT = 16 << 20  # the root element must start within this many bytes
_PROLOG_NOISE = re.compile(rb"<!--.*?-->|<\?.*?\?>", re.S)
# EPC lists whose <epc> texts are staged (with their event, read or not) and the one
# that is read but never staged (the inputs of a transformation are not commissioned)
_EPC_LISTS = frozenset({"epcList", "childEPCs", "outputEPCList"})
_DROPPED_LISTS = frozenset({"inputEPCList"})

# XInclude's namespaces (the 2001 recommendation; libxml2 also knows the 2003 draft)
_XINCLUDE_NAMESPACES = ("http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude")

# Codes of the tags that reach Python.
_LIST, _DROP, _READ, _SKIP, _ROOT, _IDENTIFIER, _INCLUDE = range(7)


def _names(local: str) -> list[str]:
    """`local` in no namespace and in both EPCIS namespaces (lxml tag-filter syntax)."""
    return ["{}" + local] + ["{%s}%s" % (ns, local) for ns in EPCIS_NAMESPACES]  # noqa: UP031


def _tag_codes() -> dict[str, int]:
    codes: dict[str, int] = {}
    for local, code in (
        *((t, _LIST) for t in sorted(_EPC_LISTS)),
        *((t, _DROP) for t in sorted(_DROPPED_LISTS)),
        *((t, _READ) for t in READ_EVENTS),
        *((t, _SKIP) for t in SKIPPED_EVENTS),
    ):
        for name in _names(local):
            codes[name.removeprefix("{}")] = code
    for ns in EPCIS_NAMESPACES:
        codes["{%s}EPCISDocument" % ns] = _ROOT  # noqa: UP031
    for ns in _XINCLUDE_NAMESPACES:
        codes["{%s}include" % ns] = _INCLUDE  # noqa: UP031
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


# Children of an event: what each is to `_read_event` (0: nothing to read in it; None,
# the default: unknown, searched for lot sources in a commissioning).
_IGNORED_CHILDREN = (
    "eventTime",
    "recordTime",
    "eventTimeZoneOffset",
    "eventID",
    "errorDeclaration",
    "certificationInfo",
    "disposition",
    "persistentDisposition",
    "bizTransactionList",
    "quantityList",
    "childQuantityList",
    "inputQuantityList",
    "outputQuantityList",
    "transformationID",
    "sensorElementList",
    *sorted(_EPC_LISTS | _DROPPED_LISTS),
)


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
        *((name, 0) for name in _IGNORED_CHILDREN),
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


def _first_id(node: etree._Element) -> str | None:
    for child in node:
        if child.tag in _ID_TAGS:
            return _text(child)
    return None


def _read_event(
    node: etree._Element,
    row: list[str | None],
    parties: list[Party],
    others: list[etree._Element],
) -> None:
    """Read the fields of one finished event into `row` and `parties`; its unknown
    children go to `others` (where a commissioning's other lot sources may be)."""
    child_codes = _CHILD
    for child in node:
        code = child_codes.get(child.tag)  # type: ignore[call-overload]
        if code is None:
            if isinstance(child.tag, str):
                others.append(child)
        elif code == 0:
            continue
        elif code == 1 or code == 3:
            text = child.text
            row[ACTION if code == 1 else PARENT] = None if text is None else (text.strip() or None)
        elif code == 2:
            row[BIZ_STEP] = _cbv(child.text)
        elif code == 4 or code == 5:
            row[READ_POINT if code == 4 else BIZ_LOCATION] = _first_id(child)
        elif code == 6 or code == 7:
            role = "source" if code == 6 else "destination"
            for item in child:
                if _local(item.tag) == role:
                    parties.append((role, _cbv(item.get("type")), _text(item)))
        elif code == 8:
            for item in child.iter():
                name = _local(item.tag)
                if name == "lotNumber":
                    if row[LOT] is None:
                        row[LOT] = _text(item)
                elif name == "itemExpirationDate" and row[EXPIRY] is None:
                    row[EXPIRY] = _text(item)
        elif child.get("name") is not None:  # an Optel <extension name="BATCH">
            others.append(child)
        else:  # EPCIS 1.2 keeps sourceList, destinationList, ilmd in <extension>
            _read_event(child, row, parties, others)


def _is_commissioning(event_type: str, row: list[str | None]) -> bool:
    if row[BIZ_STEP] != "commissioning":
        return False
    return event_type == "TransformationEvent" or (
        event_type == "ObjectEvent" and row[ACTION] == "ADD"
    )


def _other_lot_sources(others: list[etree._Element], row: list[str | None]) -> None:
    """Complete a commissioning's lot and expiry from the sources after the ILMD (§6):
    `lotNumber` / `itemExpirationDate` anywhere else in the event, SAP's
    `SAPExtension/ObjAttributes` `LOTNO` / `DATEX`, Optel's `extension` elements
    named `BATCH` / `EXPIRY` (names of SAP and Optel in either case)."""
    lots: list[str | None] = [row[LOT], None, None, None]
    expiries: list[str | None] = [row[EXPIRY], None, None, None]
    for top in others:
        for item in top.iter():
            name = _local(item.tag)
            if name == "lotNumber":
                lots[1] = lots[1] or _text(item)
            elif name == "itemExpirationDate":
                expiries[1] = expiries[1] or _text(item)
            elif name.lower() == "extension":
                kind = (item.get("name") or "").strip().upper()
                if kind == "BATCH":
                    lots[3] = lots[3] or _text(item)
                elif kind == "EXPIRY":
                    expiries[3] = expiries[3] or _text(item)
            elif (upper := name.upper()) in ("LOTNO", "DATEX"):
                holder = item.getparent()
                outer = holder.getparent() if holder is not None else None
                if (
                    holder is not None
                    and outer is not None
                    and _local(holder.tag).lower() == "objattributes"
                    and _local(outer.tag).lower() == "sapextension"
                ):
                    if upper == "LOTNO":
                        lots[2] = lots[2] or _text(item)
                    else:
                        expiries[2] = expiries[2] or _text(item)
    row[LOT] = first_source(lots)
    row[EXPIRY] = first_source(expiries)


def _syntax_reason(err: etree.XMLSyntaxError) -> str:
    """What is wrong, where, and what to do, from libxml2's first error (lxml's own
    message is sometimes the last and least helpful one: "no element found")."""
    log: list[etree._LogEntry] = list(err.error_log)  # type: ignore[call-overload]
    entries = [e for e in log if e.level >= etree.ErrorLevels.ERROR]
    first = entries[0] if entries else None
    message = (first.message if first is not None else str(err)).strip()
    line = first.line if first is not None and first.line > 0 else err.lineno
    at = f" at line {line}" if line and line > 0 else ""
    entity = re.search(r"Entity '([^']*)' not defined", message)
    if entity:
        return (
            f"the document uses the entity &{entity[1]};{at}, which it does not define "
            "(entities are refused); ask the sender to write the character itself"
        )
    if "Excessive depth" in message:
        return depth_rejected(line).reason
    if "too long" in message or "huge" in message.lower():
        return (
            f"a text{at} is longer than the limit of 1 MiB; no EPCIS value is that long: ask "
            "the sender to correct the document"
        )
    if "encoding" in message or "not proper UTF-8" in message or "Char 0x" in message:
        return (
            f"the file is not text in its declared encoding{at} ({message}); ask the sender "
            "for the document in the encoding it declares (UTF-8 by default)"
        )
    return f"not well-formed XML{at}: {message}; ask the sender to correct the document"


def check_prolog(path: Path) -> tuple[str, str | None]:
    """Reject a document with a DOCTYPE, or that is not well-formed up to its root, or not EPCIS.

    Returns the root's namespace and schemaVersion.  Only the prolog and the root
    start tag are parsed (no DTD, no entities, no network): nothing the document
    refers to is ever read.
    """
    guard = ByteGuard(path, b"<", "a text, comment or attribute value", text_after=b">")
    etree.clear_error_log()  # the errors of earlier documents are in the thread's log too
    with path.open("rb") as fh:
        first = fh.read(_PROLOG_CHUNK)
        if not first.strip():
            raise EpcisRejected("the file is empty: no XML element")
        guard.check(first)
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
                if guard.offset > _PROLOG_LIMIT:
                    raise EpcisRejected(
                        f"no root element starts in the first {_PROLOG_LIMIT >> 20} MiB of the "
                        "file; ask the sender to correct the document"
                    )
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
                if chunk:
                    guard.check(chunk)
        except etree.XMLSyntaxError as err:
            raise EpcisRejected(_syntax_reason(err)) from err


def stage_document(
    con: duckdb.DuckDBPyConnection, path: Path, batch_size: int = 250_000
) -> DocumentInfo:
    """Parse `path` into the staging tables of `con` (replaced) and describe it (SPEC §6).

    Raises `EpcisRejected` when the document must be quarantined (the reason says
    why); the staged rows are then incomplete and must not be used.
    """
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:  # §8: a larger file is quarantined before it is read
        raise EpcisRejected(
            f"the document is {size:,} bytes, over the limit of 1 GB "
            f"({MAX_FILE_BYTES:,} bytes) for one file: split it into documents of at most 1 GB"
        )
    if path.suffix.lower() in JSONLD_SUFFIXES:
        from connectors.epcis_jsonld import stage_jsonld

        return stage_jsonld(con, path, batch_size)
    namespace, schema_version = check_prolog(path)
    info = DocumentInfo(file=path.name, namespace=namespace, schema_version=schema_version)
    with staging(con):
        return _stage(con, path, info, batch_size)


_DEEP = etree.XPath("/*" + "/*" * MAX_DEPTH)


def _drop(el: etree._Element) -> None:
    """Take a finished element out of the tree, keeping the text after it (its tail)."""
    parent = el.getparent()
    if parent is None:
        return
    if el.tail:
        before = el.getprevious()
        if before is not None:
            before.tail = (before.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _check_depth(root: etree._Element, whole: bool) -> None:
    """Nesting over the limit: the open elements (the last child at every level), or,
    `whole`, every element still in the tree (the last chunk; a small document whole)."""
    if whole:
        found = _DEEP(root)
        if isinstance(found, list) and found:
            raise depth_rejected(getattr(found[0], "sourceline", None))
        return
    el, depth = root, 1
    while len(el):
        el = el[-1]
        depth += 1
        if depth > MAX_DEPTH:
            raise depth_rejected(el.sourceline if isinstance(el.sourceline, int) else None)


def _unknown_in(wrapper: etree._Element, upto: int | None = None) -> int:
    """Elements of an EventList's `extension` wrapper (at any depth of wrappers) that are
    no event type — skipped events (§6) — among its first `upto` children (all: None)."""
    n = 0
    for el in itertools.islice(wrapper, upto):
        local = _local(el.tag)
        if local == "extension":
            n += _unknown_in(el)
        elif local and local not in EVENT_TYPES:
            n += 1
    return n


def _wrappers_in(events: etree._Element, keep_last: bool) -> int:
    """The unknown elements of the extension wrappers of an EventList (its last child
    left out when `keep_last`: it may still be parsing).  The wrappers are found in C."""
    last = events[-1] if keep_last and len(events) else None
    return sum(_unknown_in(w) for w in events.iterchildren(*_EXTENSIONS) if w is not last)


_EVENT_LISTS = _names("EventList")
_EXTENSIONS = _names("extension")
_EXTENSION_TAGS = frozenset(t.removeprefix("{}") for t in _EXTENSIONS)


def _unknown_before(event: etree._Element) -> int:
    """The elements of extension wrappers that are no event type between the event that
    starts (`event`) and the event before it: skipped events (§6), each in its place —
    the event's index counts them.  They are taken out of the tree as they are counted
    (`_prune` counts the others).  Usually the element before an event is an event (or
    pruned): one lookup."""
    n, node = 0, event
    while True:
        prev = node.getprevious()
        if prev is not None and prev.tag in _EVENT_LOCAL:
            return n
        parent = node.getparent()
        if parent is None:
            return n
        in_wrapper = parent.tag in _EXTENSION_TAGS
        while prev is not None and prev.tag not in _EVENT_LOCAL:
            if prev.tag in _EXTENSION_TAGS:
                n += _unknown_in(prev)
            elif in_wrapper and _local(prev.tag):
                n += 1
            before = prev.getprevious()
            parent.remove(prev)
            prev = before
        if prev is not None or not in_wrapper:
            return n
        node = parent


def _prune(root: etree._Element, final: bool) -> int:
    """Delete what is finished and read from the tree: at every level of the open
    elements down to an event, every child but the last (which may still be parsing);
    `final`: all.  An event still open keeps its children (they are read at its end;
    its EPC list is harvested apart).  Returns the unknown elements of extension
    wrappers among those deleted (skipped events)."""
    if final:  # the document is read: count what is left, the tree goes with the parser
        return sum(_wrappers_in(events, False) for events in root.iter(*_EVENT_LISTS))
    skipped, el, in_list = 0, root, False
    while True:
        local = _local(el.tag)
        if local in EVENT_TYPES:
            return skipped
        wrapper = in_list and local == "extension"
        in_list = local == "EventList" or wrapper
        n = len(el) - 1
        if n > 0:
            if local == "EventList":
                skipped += _wrappers_in(el, True)
            elif wrapper:
                skipped += _unknown_in(el, n)
            del el[:n]
        if not len(el):
            return skipped
        el = el[-1]


def _stage(
    con: duckdb.DuckDBPyConnection, path: Path, info: DocumentInfo, batch_size: int
) -> DocumentInfo:
    stager = Stager(con)
    guard = ByteGuard(path, b"<", "a text, comment or attribute value", text_after=b">")
    etree.clear_error_log()
    codes = _CODES
    locals_ = _EVENT_LOCAL
    text_of = _TEXT_OF
    root: etree._Element | None = None
    open_list: etree._Element | None = None  # the EPC list being parsed, if any
    open_dropped = False  # it is an inputEPCList
    inside = 0  # XInclude include elements open around the parser's position

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
                    guard.check(chunk)
                    parser.feed(chunk)
                else:
                    parser.close()
                epc_text = stager.epc_text
                el: etree._Element
                for action, el in parser.read_events():  # type: ignore[assignment]
                    code = codes.get(el.tag, _IDENTIFIER)  # type: ignore[call-overload]
                    if inside or code == _INCLUDE:  # never followed, read as if not there
                        if code == _INCLUDE:
                            inside += 1 if action == "start" else -1
                            if action == "end":
                                _drop(el)
                        continue
                    if action == "start":
                        if code in (_LIST, _DROP):
                            # a list is an event's when it is a child of the event (one of
                            # an unknown element of a wrapper or an event is no one's)
                            holder = el.getparent()
                            open_list = el
                            open_dropped = code == _DROP or (
                                holder is None or holder.tag not in _EVENT_LOCAL
                            )
                        elif code == _ROOT:
                            root = el
                        elif code != _IDENTIFIER and (before := _unknown_before(el)):
                            stager.skip_unknown(before)  # before the event's own EPCs
                        continue
                    if code == _LIST:
                        open_list = None
                        if not open_dropped:  # the <epc> children not yet harvested
                            epc_text.extend(map(text_of, el))
                    elif code == _DROP:
                        open_list = None
                    elif code == _IDENTIFIER:
                        holder = el.getparent()
                        if (
                            info.sbdh_sender is None
                            and holder is not None
                            and _local(holder.tag) == "Sender"
                        ):
                            info.sbdh_sender = _text(el)
                            info.sbdh_sender_authority = el.get("Authority")
                    elif code != _ROOT:
                        local = locals_[el.tag]  # type: ignore[index]
                        index = stager.end_event(local)
                        if code == _SKIP:
                            stager.skip()
                            continue
                        row: list[str | None] = [None] * 7
                        parties: list[Party] = []
                        others: list[etree._Element] = []
                        _read_event(el, row, parties, others)
                        if local == "TransformationEvent" and row[BIZ_STEP] != "commissioning":
                            stager.skip()
                            continue
                        if (
                            others
                            and (row[LOT] is None or row[EXPIRY] is None)
                            and _is_commissioning(local, row)
                        ):
                            _other_lot_sources(others, row)
                        stager.read(index, local, row, parties)
                if open_list is not None and len(open_list) > 1:
                    # an EPC list still open: take its complete children (all but the
                    # last, which may still be parsing) so the tree never holds it whole
                    done = len(open_list) - 1
                    if not open_dropped:
                        epc_text.extend(map(text_of, itertools.islice(open_list, done)))
                    del open_list[:done]
                if root is not None:
                    _check_depth(root, whole=not chunk)
                    stager.skip_unknown(_prune(root, final=not chunk))
                if not chunk:
                    break
                stager.flush_if_full(batch_size)
    except etree.XMLSyntaxError as err:
        stager.abandon()
        raise EpcisRejected(_syntax_reason(err)) from err
    except BaseException:
        stager.abandon()
        raise
    return stager.finish(info)
