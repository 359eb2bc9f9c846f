"""The staging that both EPCIS readers feed (SPEC §6): one format, whatever the syntax.

`connectors.epcis` (XML) and `connectors.epcis_jsonld` (JSON-LD) read a document as
a stream and hand what they find to a `Stager`: the text of every EPC of an EPC list
(in document order, with the number of texts at the end of each event), one row
per read event, one row per source/destination.  The stager hands them to a writer
thread in batches (`_Writer`), which parses the EPC URIs and parentIDs in Polars
(`transforms.epc.parse_epcs_frame`), gives each its identity key
(`transforms.epc.epc_key_sql`), each event its kind and expiry date
(`transforms.shipping`) and inserts them into the temporary tables of
`schemas.shipping.STAGE_*`, while the reader goes on.  Every shipping rule reads
those tables, never a syntax.

Also here, for both readers: the rejection of a whole document (`EpcisRejected`),
the CBV word of a value however it is written (`cbv_word`), the order of the lot
and expiry sources (`LOT_SOURCES`), and the bounded-input guard (`ByteGuard`,
SPEC §8): a NUL byte, or more than `MAX_TEXT` bytes without a delimiter, rejects
the document with the line and the limit before the parser sees it.
"""

from __future__ import annotations

import contextlib
import gc
import queue
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from schemas.shipping import (
    STAGE_EPCS,
    STAGE_EVENTS,
    STAGE_PARTIES,
    STAGING_DDL,
    DocumentInfo,
    SourceParty,
)
from transforms.epc import epc_key_sql, parse_epcs_frame
from transforms.shipping import event_kind_sql, expiry_date_sql
from transforms.state import one_thread

MAX_TEXT = 1 << 20  # bytes: a text node / JSON string over this quarantines the document
MAX_DEPTH = 64  # levels of nesting

# §6: where the lot and expiry of a commissioning come from, in this order; each of
# the two takes its own first source
LOT_SOURCES = ("ilmd", "event", "sap", "optel")

_CBV_PREFIX = re.compile(
    r"^(urn:epcglobal:cbv:[A-Za-z]+:|https?://ref\.gs1\.org/cbv/[A-Za-z]+-|cbv:[A-Za-z]+-)"
)


class EpcisRejected(Exception):
    """The whole document is rejected (quarantined); `reason` says why in one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def cbv_word(value: str | None) -> str | None:
    """The bare CBV word of a bizStep / disposition / source type, written as URN
    (`urn:epcglobal:cbv:bizstep:shipping`), web URI (`https://ref.gs1.org/cbv/BizStep-shipping`),
    CURIE (`cbv:BizStep-shipping`) or bare word (`shipping`)."""
    if value is None:
        return None
    return _CBV_PREFIX.sub("", value.strip())


def first_source(values: list[str | None]) -> str | None:
    """The value of the first source (in `LOT_SOURCES` order) that gives one."""
    for value in values:
        if value is not None:
            return value
    return None


# ------------------------------------------------------------------ bounded input (§8)


def line_at(path: Path, offset: int) -> int:
    """The line (from 1) of byte `offset` of `path`, counted in a stream."""
    lines, done = 1, 0
    with path.open("rb") as fh:
        while done < offset:
            chunk = fh.read(min(1 << 20, offset - done))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            done += len(chunk)
    return lines


class ByteGuard:
    """Checks each chunk of a document before its parser sees it (SPEC §8 *Bounded input*).

    - A NUL byte: the file is not text (UTF-16 or UTF-32 without a byte-order mark,
      a binary or sparse file).  Not checked after a UTF-16/32 byte-order mark.
    - More than `MAX_TEXT` bytes without `delimiter` (`<` in XML: a text node,
      comment or attribute value; `"` in JSON: a string, or a run of other values).
      With `text_after` (`>` in XML) the markup after a delimiter (a tag with its
      attribute values, a comment, a CDATA section: up to the first `text_after`) is
      one run and the text after it another: a text node of exactly `MAX_TEXT` bytes
      is not over the limit whatever its start tag.

    Chunks must be at most `MAX_TEXT` bytes: a run over the limit then always
    crosses a chunk boundary, so two `memchr` scans per chunk (`find`, `rfind`)
    see every run — the checks cost nothing measurable.
    """

    def __init__(
        self,
        path: Path,
        delimiter: bytes,
        what: str,
        encoding: str = "UTF-8",
        text_after: bytes | None = None,
    ) -> None:
        self.path, self.delimiter, self.what, self.encoding = path, delimiter, what, encoding
        self.text_after = text_after
        self.offset = 0  # bytes checked so far
        self.run_start = 0  # offset just after the last delimiter
        self.text_start: int | None = 0  # where the run is counted from (None: not yet known)
        self.check_nul = True

    def check(self, chunk: bytes) -> None:
        if len(chunk) > MAX_TEXT:
            raise ValueError("ByteGuard chunks must not exceed MAX_TEXT")
        if self.offset == 0 and chunk[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
            self.check_nul = False  # UTF-32 with a byte-order mark
        elif self.offset == 0 and chunk[:2] in (b"\xfe\xff", b"\xff\xfe"):
            self.check_nul = False  # UTF-16 with a byte-order mark
        if self.check_nul and (nul := chunk.find(b"\x00")) >= 0:
            line = line_at(self.path, self.offset + nul)
            raise EpcisRejected(
                f"the file is not text in its encoding ({self.encoding}): a NUL byte at line "
                f"{line} (a UTF-16 file needs a byte-order mark); ask the sender for the "
                f"document as {self.encoding} text"
            )
        first = chunk.find(self.delimiter)
        end = self.offset + len(chunk)
        if self.text_start is None:  # the run's markup goes on in this chunk: up to its end
            stop = first if first >= 0 else len(chunk)
            found = chunk.find(self.text_after, 0, stop)  # type: ignore[arg-type]
            if self.offset + (found if found >= 0 else stop) - self.run_start > MAX_TEXT:
                self._too_long()
            if found >= 0:
                self.text_start = self.offset + found + 1
        if first < 0:
            if end - self._counted_from() > MAX_TEXT:
                self._too_long()
        else:
            if self.offset + first - self._counted_from() > MAX_TEXT:
                self._too_long()
            last = chunk.rfind(self.delimiter)
            self.run_start = self.offset + last + 1
            self.text_start = self.run_start if self.text_after is None else None
            if self.text_start is None:
                found = chunk.find(self.text_after, last + 1)  # type: ignore[arg-type]
                if found >= 0:
                    self.text_start = self.offset + found + 1
            if end - self._counted_from() > MAX_TEXT:
                self._too_long()
        self.offset = end

    def _counted_from(self) -> int:
        return self.run_start if self.text_start is None else self.text_start

    def _too_long(self) -> None:
        line = line_at(self.path, self.run_start)
        raise EpcisRejected(
            f"{self.what} starting at line {line} is longer than the limit of 1 MiB "
            f"({MAX_TEXT} bytes); no EPCIS value is that long: ask the sender to correct the "
            "document"
        )


def depth_rejected(line: int | None) -> EpcisRejected:
    where = f" at line {line}" if line else ""
    return EpcisRejected(
        f"the document nests deeper than the limit of {MAX_DEPTH} levels{where}; no EPCIS "
        "document does: ask the sender to correct it"
    )


# ------------------------------------------------------------------ rows and batches

EVENT_COLUMNS = (
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
PARTY_COLUMNS = ("event_index", "role", "type", "id")

Party = tuple[str, str | None, str | None]  # role, type (bare CBV word), id
# positions in the row of a read event that a reader fills (EVENT_COLUMNS after the
# index and the type)
ACTION, BIZ_STEP, PARENT, READ_POINT, BIZ_LOCATION, LOT, EXPIRY = range(7)


class Stager:
    """What a reader found so far: row buffers handed to the writer as whole batches,
    and the facts of `DocumentInfo` (counts, sources, locations).

    A reader appends EPC texts to `epc_text` as it meets them, calls `end_event` at
    the end of every event (read or not: event indexes count all events), then
    `read` or `skip` for it.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.writer = _Writer(con)
        self.epc_text: list[str | None] = []
        self.epc_ends: list[int] = []  # len(epc_text) at the end of each event of this batch
        self.base = 0  # events ended before this batch
        self.staged = 0
        self.events: list[tuple[object, ...]] = []  # rows in EVENT_COLUMNS order
        self.parties: list[tuple[object, ...]] = []  # rows in PARTY_COLUMNS order
        self.events_ended = 0
        self.skipped = 0  # events ended and not read
        self.by_type: dict[str, int] = {}
        self.sources: dict[SourceParty, None] = {}  # each distinct source once, first occurrence
        self.locations: dict[str, None] = {}

    def end_event(self, event_type: str) -> int:
        """An event ended (its EPC texts are all in `epc_text`): its index, from 1."""
        self.by_type[event_type] = self.by_type.get(event_type, 0) + 1
        self.events_ended += 1
        self.epc_ends.append(len(self.epc_text))
        return self.events_ended

    def skip_unknown(self, n: int) -> None:
        """`n` elements of an extension wrapper that are no event type ended, before the
        next event: skipped events (§6), each taking its place in the event indexes."""
        for _ in range(n):
            self.events_ended += 1
            self.skipped += 1
            self.epc_ends.append(len(self.epc_text))

    def skip(self) -> None:
        """The event just ended is not read (§6 *Events read*)."""
        self.skipped += 1

    def read(
        self,
        index: int,
        event_type: str,
        row: list[str | None],
        parties: list[Party],
    ) -> None:
        """Stage read event `index`: `row` is EVENT_COLUMNS after the index and the type."""
        self.events.append((index, event_type, *row))
        for role, kind, ident in parties:
            self.parties.append((index, role, kind, ident))
            if ident and role == "source":
                # kept for the sender rule (`transforms.shipping.sender_candidates`), each
                # distinct one once: a source repeated on every event does not grow
                self.sources[SourceParty(event_type, row[BIZ_STEP], kind, ident)] = None
        for where in (row[BIZ_LOCATION], row[READ_POINT]):
            if where:
                self.locations[where] = None

    def flush_if_full(self, batch_size: int) -> None:
        # events go with the EPC batches, so that few are left for the end
        if len(self.epc_text) >= batch_size or len(self.events) >= batch_size:
            self.flush()

    def flush(self) -> None:
        if self.epc_text:
            self.staged += len(self.epc_text)
            self.writer.put(_EpcBatch(self.epc_text, self.epc_ends, self.base))
            self.epc_text = []
            self.epc_ends = []
        else:
            self.epc_ends.clear()
        self.base = self.events_ended
        if self.events:
            self.writer.put(_EventBatch(self.events))
            self.events = []
        if self.parties:
            self.writer.put(_RowBatch(STAGE_PARTIES, PARTY_COLUMNS, self.parties))
            self.parties = []

    def finish(self, info: DocumentInfo) -> DocumentInfo:
        """Stage what is left, wait for the writer, and describe the document."""
        self.flush()
        self.writer.close()
        info.events_read = self.events_ended - self.skipped
        info.events_skipped = self.skipped
        info.events_by_type = dict(sorted(self.by_type.items()))
        info.epcs_staged = self.staged
        info.sources = list(self.sources)
        info.location_candidates = list(self.locations)
        return info

    def abandon(self) -> None:
        """Stop the writer after a failure of the reader (that failure wins)."""
        with contextlib.suppress(BaseException):
            self.writer.close()


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
        super().__init__(STAGE_EVENTS, EVENT_COLUMNS, rows)

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
# the expiry rule runs once per distinct text of the batch (a lot's expiry repeats)
_EVENT_INSERT = f"""INSERT INTO {STAGE_EVENTS} BY NAME
    WITH dates AS (
        SELECT expiry, {expiry_date_sql("expiry")} AS expiry_date
        FROM (SELECT DISTINCT expiry FROM _epcis_batch WHERE expiry IS NOT NULL))
    SELECT {", ".join(f"b.{c}" for c in EVENT_COLUMNS)}, d.expiry_date,
        {event_kind_sql("b.event_type", "b.action", "b.biz_step")} AS kind,
        CASE WHEN b.parent_id IS NOT NULL THEN b.epc_scheme END AS parent_scheme,
        CASE WHEN b.parent_id IS NOT NULL THEN {epc_key_sql(scheme="b.epc_scheme", epc="b.parent_id", product_code="b.product_code", serial="b.serial", sscc="b.sscc")} END
            AS parent_key
    FROM _epcis_batch b LEFT JOIN dates d ON d.expiry = b.expiry"""
_EPC_INSERT = f"""INSERT INTO {STAGE_EPCS} BY NAME
    SELECT event_index, epc, epc_scheme, product_code, serial, {epc_key_sql()} AS epc_key
    FROM _epcis_batch"""


@contextlib.contextmanager
def staging(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Around the reading of one document: fresh staging tables; DuckDB on one thread (the
    reader has the other core); Python's cyclic garbage collector paused and the
    interpreter's thread switch interval shortened (both restored after, also after a
    rejection).

    Reading a document makes millions of short-lived objects and row tuples, none of them
    in a reference cycle; each collection pass would walk the rows still buffered (3% of
    the parse).  Reference counting frees them as usual.

    The writer thread takes the GIL back dozens of times per batch (each Polars or DuckDB
    call releases it), and each time waits until the reader, which holds it while it runs
    Python code (the JSON-LD reader nearly always), is asked to drop it: up to the switch
    interval, 5 ms by default — hundreds of waits per document.  `_SWITCH_INTERVAL` makes
    each wait short.
    """
    for ddl in STAGING_DDL:
        con.execute(ddl)
    enabled = gc.isenabled()
    interval = sys.getswitchinterval()
    gc.disable()
    sys.setswitchinterval(min(interval, _SWITCH_INTERVAL))
    try:
        with one_thread(con):
            yield
    finally:
        sys.setswitchinterval(interval)
        if enabled:
            gc.enable()


_SWITCH_INTERVAL = 0.0002  # seconds (see `staging`)
