"""TraceLink shipping files: sender, hierarchy and three-way serial reconciliation (SPEC §6).

Pure rules over a DuckDB connection: they read the staging tables that
`connectors.epcis.stage_document` filled (`schemas.shipping.STAGE_*`) and the
state tables (`pool`, `serial_runs`, `cmos`, `cmo_products`, `shipping_aggregation`,
`shipping_parents`, `shipping_exception_log`), and change the state only for a
document whose sender is known.  The caller wraps `reconcile_document` in one
transaction per file and writes the reports.

Event kinds: *commissioning* = ObjectEvent, action ADD, bizStep commissioning, or
TransformationEvent with bizStep commissioning (its output EPCs); *shipping* =
ObjectEvent with bizStep shipping; *decommissioning* = ObjectEvent with bizStep
decommissioning or destroying; *aggregation* = AggregationEvent (ADD and OBSERVE
record that the children are in the parent, DELETE takes the listed children out,
or all of them when none is listed).  Other ObjectEvents are read (counted) without
effect.  Shipping and decommissioning events are expanded alike through the
packaging hierarchy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import duckdb
import polars as pl

from schemas.shipping import (
    EPC_SCHEME_TYPE,
    SHIPPING_EXCEPTIONS_SCHEMA,
    SHIPPING_RECONCILIATION_COLUMNS,
    STAGE_EPCS,
    STAGE_EVENTS,
    STAGE_PARTIES,
    DocumentInfo,
)
from transforms.codes import same_serial_sql, serial_num_sql, serial_txt_sql
from transforms.context import RunContext
from transforms.epc import SGLN_PREFIX, parse_epcs_sql, sgln_key, valid_gln
from transforms.serial_runs import overlay, ranges_of
from transforms.serials import load_runs, save_runs
from transforms.state import appended_to, cmo_rows

_EXPANDED_KINDS = "('shipping', 'decommissioning')"  # events whose EPCs are expanded
_SGTIN_OUTCOMES = {
    "OK": "ok",
    "UNKNOWN_SERIAL": "unknown_serial",
    "ALREADY_SHIPPED": "already_shipped",
    "NOT_PRODUCEABLE": "not_produceable",
    "NOT_ASSIGNED": "not_assigned",
    "OTHER_CMO": "other_cmo",
}
_MAX_DEPTH = 32
_TEMP = (
    "_ship_malformed",
    "_ship_parents",
    "_ship_delete_all",
    "_ship_reach",
    "_ship_stored_links",
    "_ship_parent_texts",
    "_ship_intervals",
    "_ship_stored",
    "_ship_expanded",
    "_ship_serials",
    "_ship_exceptions",
)


@dataclass
class ShippingResult:
    """What one shipping document did (SPEC §10).

    `reconciliation` is its `shipping_reconciliation.csv` row; `exceptions` its rows of
    `shipping_exceptions.csv`; `quarantine_reason` is set (and nothing changed)
    when the document must be quarantined.
    """

    reconciliation: dict[str, object]
    exceptions: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=SHIPPING_EXCEPTIONS_SCHEMA)
    )
    quarantine_reason: str | None = None
    sender_cmo_id: str | None = None
    warnings: list[str] = field(default_factory=list)


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> None:
    con.execute(sql, params or []).fetchall()


class SenderCandidate(NamedTuple):
    """A sender candidate as written; `gln`: a GLN-13 (the SBDH's `Authority="GLN"`, or a
    JSON-LD document's 13-digit `sender`), otherwise an SGLN (URN or bare)."""

    text: str
    gln: bool = False


def _document_sender(doc: DocumentInfo) -> SenderCandidate | None:
    """The SBDH sender (or the JSON-LD document's `sender`) when it is an SGLN, or a GLN
    with a valid check digit (§6 *Sender*)."""
    sender = (doc.sbdh_sender or "").strip()
    if not sender:
        return None
    if sgln_key(sender) is not None:
        return SenderCandidate(sender)
    authority = (doc.sbdh_sender_authority or "").strip().upper()
    if (authority == "GLN" or doc.syntax == "jsonld") and valid_gln(sender):
        return SenderCandidate(sender, gln=True)
    return None


def sender_candidates(doc: DocumentInfo) -> list[SenderCandidate]:
    """The sender candidates of §6, in order, each once (as written): the sources of type
    owning party or location of the shipping ObjectEvents; then the document's sender (the
    SBDH's, or the JSON-LD `sender`) when it is an SGLN or a GLN; then, event by event,
    each read event's bizLocation, then readPoint."""
    shipping_sources = [
        SenderCandidate(s.id)
        for s in doc.sources
        if s.event_type == "ObjectEvent"
        and s.biz_step == "shipping"
        and s.type in ("owning_party", "location")
    ]
    sender = _document_sender(doc)
    header = [sender] if sender else []
    locations = [SenderCandidate(t) for t in doc.location_candidates]
    return list(dict.fromkeys([*shipping_sources, *header, *locations]))


_SHOWN = 10  # candidates listed in a quarantine reason


def identify_sender(
    con: duckdb.DuckDBPyConnection, doc: DocumentInfo
) -> tuple[str | None, str | None]:
    """The sender CMO of a document and, when there is none, the quarantine reason (§6 *Sender*).

    The first candidate (in `sender_candidates` order) that is the `sgln` of a CMO that
    is not deleted: an SGLN compared in the `prefix.location.extension` form; a GLN
    matches a CMO whose sgln has the extension `0` and whose company prefix and
    location reference are the GLN's first 12 digits.  Two CMOs with one SGLN: the
    smaller id.  The reason lists the candidates found.
    """
    cmos: dict[str, str] = {}
    by_gln: dict[str, str] = {}
    for cmo_id, sgln in con.sql(
        "SELECT cmo_id, sgln FROM cmos WHERE NOT deleted AND sgln IS NOT NULL ORDER BY cmo_id"
    ).fetchall():
        key = sgln_key(sgln)
        if key is None:
            continue
        cmos.setdefault(key, cmo_id)
        prefix, location, extension = key.split(".", 2)
        if extension == "0":
            by_gln.setdefault(prefix + location, cmo_id)
    candidates = sender_candidates(doc)
    for candidate in candidates:
        if candidate.gln:
            found = by_gln.get(candidate.text.strip()[:12])
        else:
            key = sgln_key(candidate.text)
            found = cmos.get(key) if key is not None else None
        if found is not None:
            return found, None
    unusable = ""
    if doc.sbdh_sender and _document_sender(doc) is None:
        unusable = (
            f" (the document's sender '{doc.sbdh_sender.strip()}' is neither an SGLN nor a GLN "
            "with a valid check digit)"
        )
    if not candidates:
        return None, (
            "sender unknown: the document names no sender — no source on a shipping event, no "
            f"SGLN or GLN as its sender, no bizLocation or readPoint on a read event{unusable}; "
            "ask the CMO to name its SGLN, then send the file again"
        )
    names = [f"GLN {c.text}" if c.gln else c.text for c in candidates]
    shown = ", ".join(names[:_SHOWN])
    if len(names) > _SHOWN:
        shown += f" and {len(names) - _SHOWN} more"
    return None, (
        f"sender matches no CMO: none of the candidates {shown} is the SGLN of a CMO that is "
        f"not deleted{unusable} (add the CMO's sgln to its master data, then send the file again)"
    )


def event_kind_sql(event_type: str, action: str, biz_step: str) -> str:
    """SQL for an event's kind (module docstring) from its type, action and bare bizStep:
    `commissioning`, `shipping`, `decommissioning`, `aggregation` or NULL (read without
    effect)."""
    return f"""CASE
        WHEN {event_type} = 'ObjectEvent' AND {action} = 'ADD' AND {biz_step} = 'commissioning'
            THEN 'commissioning'
        WHEN {event_type} = 'TransformationEvent' AND {biz_step} = 'commissioning'
            THEN 'commissioning'
        WHEN {event_type} = 'ObjectEvent' AND {biz_step} = 'shipping' THEN 'shipping'
        WHEN {event_type} = 'ObjectEvent' AND {biz_step} IN ('decommissioning', 'destroying')
            THEN 'decommissioning'
        WHEN {event_type} = 'AggregationEvent' AND {action} IN ('ADD', 'OBSERVE', 'DELETE')
            THEN 'aggregation'
    END"""


def expiry_date_sql(text: str) -> str:
    """SQL for the date of an expiry as written (§6 *Commissioning*): `YYYY-MM-DD`,
    `YYYYMMDD` or GS1 `YYMMDD` (year 20YY; day `00` = the month's last day); NULL for
    any other text or a date that does not exist (`MALFORMED_EXPIRY`)."""
    e = text
    return f"""CASE
        WHEN regexp_full_match({e}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}')
            THEN try_strptime({e}, '%Y-%m-%d')::DATE
        WHEN regexp_full_match({e}, '[0-9]{{8}}') THEN try_strptime({e}, '%Y%m%d')::DATE
        WHEN regexp_full_match({e}, '[0-9]{{6}}') AND substr({e}, 5, 2) = '00'
            THEN last_day(try_strptime('20' || substr({e}, 1, 4) || '01', '%Y%m%d'))::DATE
        WHEN regexp_full_match({e}, '[0-9]{{6}}') THEN try_strptime('20' || {e}, '%Y%m%d')::DATE
    END"""


def _stage_rows(con: duckdb.DuckDBPyConnection) -> None:
    """Name what was staged, and parse the locations, once.

    `_ship_events`: every read event with its kind, its expiry as a date
    (`expiry_text` as written) and its parent parsed (all derived as staged).
    `_ship_parents`: the usable parent of each aggregation event with its key.
    `_ship_listed`: the EPC lists of the events that matter (staged already parsed
    and keyed), with their event's kind and their staged row.
    `_ship_malformed`: every malformed identifier of the events that matter (listed,
    parent or location; locations parsed once per distinct text), for the report.
    """
    _run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW _ship_events AS
        SELECT * EXCLUDE (expiry, expiry_date), expiry_date AS expiry, expiry AS expiry_text
        FROM {STAGE_EVENTS}""",
    )
    _run(
        con,
        """CREATE OR REPLACE TEMP TABLE _ship_parents AS
        SELECT event_index, parent_id AS parent, parent_key FROM _ship_events
        WHERE kind = 'aggregation' AND parent_scheme <> 'malformed'""",
    )
    locations = f"""(
        SELECT event_index, kind, epc FROM (
            SELECT event_index, kind, unnest([read_point, biz_location]) AS epc
            FROM _ship_events WHERE kind IS NOT NULL
        ) WHERE epc IS NOT NULL
        UNION ALL
        SELECT q.event_index, e.kind, q.id
        FROM {STAGE_PARTIES} q JOIN _ship_events e USING (event_index)
        WHERE e.kind IS NOT NULL AND starts_with(q.id, 'urn:epc:id:sgln:')
    )"""
    # a location written as a bare SGLN (`1234567.00012.0`, §6 *Sender*) is parsed as one
    distinct = f"""(SELECT epc, CASE WHEN contains(epc, ':') THEN epc
        ELSE '{SGLN_PREFIX}' || epc END AS uri FROM (SELECT DISTINCT epc FROM {locations}))"""
    _run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW _ship_listed AS
        SELECT s.event_index, e.kind, s.epc, s.epc_scheme, s.product_code, s.serial, s.epc_key,
            s.rowid AS row_id
        FROM {STAGE_EPCS} s JOIN _ship_events e USING (event_index)
        WHERE e.kind IS NOT NULL""",
    )
    _run(
        con,
        f"""CREATE OR REPLACE TEMP TABLE _ship_malformed AS
        SELECT event_index, kind, epc FROM _ship_listed WHERE epc_scheme = 'malformed'
        UNION ALL
        SELECT event_index, kind, parent_id FROM _ship_events
        WHERE kind = 'aggregation' AND parent_id IS NOT NULL AND parent_scheme = 'malformed'
        UNION ALL
        SELECT o.event_index, o.kind, o.epc FROM {locations} o
        SEMI JOIN ({parse_epcs_sql(distinct, "uri")}) p ON p.epc = o.epc AND p.epc_scheme = 'malformed'""",
    )


def _build_hierarchy(con: duckdb.DuckDBPyConnection, sender: str) -> bool:
    """Containment intervals: the stored hierarchy, then the document's aggregations in order.

    `_ship_intervals(child, parent, from_idx, to_idx, ...)` (EPC keys): `child` is
    inside `parent` after event `from_idx` (0 = before the document) and until event
    `to_idx` (NULL = still).  A shipping event at index `e` sees the links with
    `from_idx < e < to_idx` — the hierarchy as of that event.  A child has one
    parent at a time: its next mention (ADD elsewhere, DELETE) ends the link; a
    DELETE that lists no child ends every link of its parent.  A stored link ends
    at the child's first mention in the document.  A link of the document knows its
    child's staged row (`row_id`), a stored one its child's text (`child_text`).
    Only the stored links the expansion may follow are read (`_reach_stored`): the
    stored hierarchy grows with every document, the part a document ships does not.
    """
    _run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW _ship_link_rows AS
        SELECT c.event_index, e.action = 'DELETE' AS unpacks, c.epc AS child_text,
            c.epc_key AS child, c.epc_scheme AS child_scheme, c.rowid AS row_id,
            p.parent_key AS parent
        FROM {STAGE_EPCS} c
        JOIN _ship_events e ON e.event_index = c.event_index
        JOIN _ship_parents p ON p.event_index = c.event_index
        WHERE e.kind = 'aggregation' AND c.epc_scheme <> 'malformed'""",
    )
    _run(
        con,
        f"""CREATE OR REPLACE TEMP TABLE _ship_delete_all AS
        SELECT DISTINCT e.event_index, p.parent_key AS parent
        FROM _ship_events e JOIN _ship_parents p USING (event_index)
        WHERE e.kind = 'aggregation' AND e.action = 'DELETE'
          AND NOT EXISTS (SELECT 1 FROM {STAGE_EPCS} c WHERE c.event_index = e.event_index)""",
    )
    _reach_stored(con, sender)
    # Usual case: every child packed once, nothing unpacked — no window, no ASOF join.
    ((links, children, deletes),) = con.sql(
        """SELECT count(*), count(DISTINCT child),
            count(*) FILTER (unpacks) + (SELECT count(*) FROM _ship_delete_all)
        FROM _ship_link_rows"""
    ).fetchall()
    simple = links == children and deletes == 0
    next_idx = (
        "NULL::INTEGER"
        if simple
        else "lead(event_index) OVER (PARTITION BY child ORDER BY event_index)"
    )
    first_mention = (
        "SELECT child, event_index AS idx FROM _ship_link_rows"  # one row per child
        if simple
        else "SELECT child, min(event_index) AS idx FROM _ship_link_rows GROUP BY child"
    )
    deleted_all = (
        "SELECT *, NULL::INTEGER AS until FROM links"
        if deletes == 0
        else """SELECT l.*, d.event_index AS until FROM links l
        ASOF LEFT JOIN _ship_delete_all d ON d.parent = l.parent AND d.event_index > l.from_idx"""
    )
    _run(
        con,
        f"""CREATE OR REPLACE TEMP TABLE _ship_intervals AS
        WITH doc AS (
            SELECT child, parent, child_scheme, row_id, NULL::VARCHAR AS child_text, unpacks,
                event_index AS from_idx, {next_idx} AS next_idx
            FROM _ship_link_rows
        ),
        stored AS (
            SELECT s.child_key AS child, s.parent_key AS parent, NULL::{EPC_SCHEME_TYPE} AS child_scheme,
                NULL::BIGINT AS row_id, s.child AS child_text, FALSE AS unpacks, 0 AS from_idx,
                f.idx AS next_idx
            FROM _ship_stored_links s
            LEFT JOIN ({first_mention}) f ON f.child = s.child_key
        ),
        links AS (SELECT * FROM doc UNION ALL SELECT * FROM stored),
        ended AS ({deleted_all}),
        kept AS (
            SELECT child, parent, child_scheme, row_id, child_text, from_idx,
                least(next_idx, until) AS to_idx  -- least() skips NULLs
            FROM ended WHERE NOT unpacks
        )
        SELECT *, child IN (SELECT DISTINCT parent FROM kept) AS child_is_parent FROM kept""",
    )
    return simple


def _reach_stored(con: duckdb.DuckDBPyConnection, sender: str) -> None:
    """`_ship_stored_links`: the sender's stored links that the expansion may follow.

    Those under a shipped EPC: the links whose parent is shipped or packed by the
    document (a superset of what its own links reach), then level by level the links
    under their children, each child once (a cycle ends; so does the depth limit).
    None when the document ships nothing or the sender has none.  Each level is one
    scan of the sender's stored keys, never a copy of its whole stored hierarchy.
    """
    links = cmo_rows(con, "shipping_aggregation", sender)
    _run(con, "CREATE OR REPLACE TEMP TABLE _ship_reach (key UHUGEINT, depth INTEGER)")
    _run(
        con,
        f"""CREATE OR REPLACE TEMP TABLE _ship_stored_links
        AS SELECT child, child_key, parent_key FROM {links} WHERE false""",
    )
    ((needed,),) = con.execute(
        f"""SELECT EXISTS (SELECT 1 FROM _ship_listed WHERE kind IN {_EXPANDED_KINDS})
            AND EXISTS (SELECT 1 FROM {links} WHERE cmo_id = ?)""",
        [sender],
    ).fetchall()
    if not needed:
        return
    _run(
        con,
        f"""INSERT INTO _ship_reach SELECT DISTINCT key, 0 FROM (
            SELECT epc_key AS key FROM _ship_listed
            WHERE kind IN {_EXPANDED_KINDS} AND epc_scheme <> 'malformed'
            UNION ALL
            SELECT child FROM _ship_link_rows)""",
    )
    for depth in range(_MAX_DEPTH):
        frontier = f"(SELECT key FROM _ship_reach WHERE depth = {depth})"
        ((found,),) = con.execute(
            f"""INSERT INTO _ship_stored_links
            SELECT a.child, a.child_key, a.parent_key FROM {links} a
            SEMI JOIN {frontier} f ON f.key = a.parent_key
            WHERE a.cmo_id = ?""",
            [sender],
        ).fetchall()
        if not found:
            break
        ((added,),) = con.execute(
            f"""INSERT INTO _ship_reach
            SELECT DISTINCT l.child_key, {depth + 1} FROM _ship_stored_links l
            SEMI JOIN {frontier} f ON f.key = l.parent_key
            ANTI JOIN _ship_reach r ON r.key = l.child_key"""
        ).fetchall()
        if not added:
            break


# the EPCs listed by shipping and decommissioning events: the expansion's first level
_SHIPPED = f"""SELECT *, 0 AS depth, epc IN (SELECT DISTINCT parent FROM _ship_intervals) AS is_parent
    FROM (
        SELECT event_index, any_value(kind) AS kind, epc_key AS epc, NULL::UHUGEINT AS parent,
            any_value(epc_scheme) AS epc_scheme, min(row_id) AS row_id,
            NULL::VARCHAR AS child_text
        FROM _ship_listed
        WHERE kind IN {_EXPANDED_KINDS} AND epc_scheme <> 'malformed'
        GROUP BY event_index, epc_key)"""
# what expanded units hold as of their shipping event (`{which}`: which units, which
# of their children).  The join is on the parent alone, the interval a filter: with the
# interval in the join condition DuckDB built its hash table on the million links instead
# of the units (the leaves of the 1M-SGTIN bench document: 0.56-1.56 s -> 0.21-0.50 s).
_INSIDE = """INSERT INTO _ship_expanded
        SELECT x.event_index, x.kind, i.child AS epc, i.parent, i.child_scheme AS epc_scheme,
            i.row_id, i.child_text, x.depth + 1, i.child_is_parent AS is_parent
        FROM _ship_intervals i
        JOIN (SELECT * FROM _ship_expanded x WHERE x.is_parent AND {which}) x
          ON i.parent = x.epc
        WHERE {children} AND i.from_idx < x.event_index
          AND (i.to_idx IS NULL OR i.to_idx > x.event_index)"""


def _expand_shipments(con: duckdb.DuckDBPyConnection, simple: bool) -> bool:
    """Every EPC shipped or decommissioned, directly or inside a unit, as of its event.

    The shipped EPCs, then level by level (`depth`) the units inside them that are a
    parent themselves (cases, inner packs: a few), each level joined from the one
    before it, whose size DuckDB then knows (a recursive query kept every level in
    memory beyond DuckDB's limit); then, in one join, the leaves inside all of them
    (the million units, which pack nothing and are not looked up).  At one moment a
    child has one parent, so the expansion is a forest; the depth limit (`_MAX_DEPTH`
    levels) only stops a cyclic hierarchy (A in B in A).
    `_ship_expanded` holds keys and where each EPC's text is (`row_id`, `child_text`);
    children known from the stored hierarchy are parsed into `_ship_stored` (the state
    keeps their text).

    Returns whether every EPC is in `_ship_expanded` once (so the reconciliation need
    not group it): true when one shipping event ships what only the document packed,
    each child packed once (`simple`) and no shipped unit is inside another one.  (A
    unit has one parent, so a cycle is only reached from a shipped unit in it, which
    the expansion then reaches again.)
    """
    _run(con, f"CREATE OR REPLACE TEMP TABLE _ship_expanded AS {_SHIPPED}")
    for depth in range(_MAX_DEPTH):
        ((parents,),) = con.execute(
            "SELECT count(*) FROM _ship_expanded WHERE depth = ? AND is_parent", [depth]
        ).fetchall()
        if not parents:
            break
        _run(con, _INSIDE.format(which="x.depth = ?", children="i.child_is_parent"), [depth])
    # (the depth limit as a literal: with a parameter this join measured slower, 0.40-0.82 s
    # against 0.21-0.50 s on the bench document)
    _run(con, _INSIDE.format(which=f"x.depth < {_MAX_DEPTH}", children="NOT i.child_is_parent"))
    ((events, stored_rows, root_inside),) = con.sql(
        """SELECT (SELECT count(DISTINCT event_index) FROM _ship_expanded WHERE depth = 0),
            (SELECT count(*) FROM _ship_expanded WHERE row_id IS NULL),
            EXISTS (SELECT 1 FROM _ship_expanded x
                    SEMI JOIN (SELECT event_index, epc FROM _ship_expanded WHERE depth = 0) r
                      ON r.event_index = x.event_index AND r.epc = x.epc
                    WHERE x.depth > 0)"""
    ).fetchall()
    stored = "(SELECT DISTINCT child_text AS epc FROM _ship_expanded WHERE row_id IS NULL)"
    _run(
        con,
        f"""CREATE OR REPLACE TEMP TABLE _ship_stored AS
        SELECT epc, epc_scheme, product_code, serial FROM ({parse_epcs_sql(stored)})""",
    )
    _run(
        con,
        """UPDATE _ship_expanded x SET epc_scheme = s.epc_scheme FROM _ship_stored s
        WHERE x.row_id IS NULL AND x.child_text = s.epc""",
    )
    return simple and events <= 1 and stored_rows == 0 and not root_inside


def _store_hierarchy(con: duckdb.DuckDBPyConnection, sender: str, simple: bool) -> None:
    """The stored hierarchy: every child the document mentions (or empties out of a
    parent) gets its link as it stands after the document's last event.  In the usual
    case (every child packed once, nothing unpacked) that is every link of the document,
    written straight from the staged rows; otherwise the links still open at the end.
    The working tables of the hierarchy are dropped: the rest does not need them."""
    links = cmo_rows(con, "shipping_aggregation", sender)
    parents = cmo_rows(con, "shipping_parents", sender)
    ((stored,),) = con.execute(
        f"SELECT EXISTS (SELECT 1 FROM {links} WHERE cmo_id = ?)", [sender]
    ).fetchall()
    unlinked = 0  # the sender's links that the document replaces or takes away
    if stored:
        ((unlinked,),) = con.execute(
            f"""DELETE FROM {links} WHERE cmo_id = ?
               AND (child_key IN (SELECT child FROM _ship_link_rows)
                    OR parent_key IN (SELECT parent FROM _ship_delete_all))""",
            [sender],
        ).fetchall()
    final = (
        "_ship_link_rows"
        if simple
        else """(SELECT l.* FROM _ship_link_rows l SEMI JOIN _ship_intervals i
            ON i.row_id = l.row_id AND i.to_idx IS NULL AND i.from_idx > 0)"""
    )
    # a parent's links stored together: DuckDB keeps its key once per run of them (RLE),
    # not once per child (a year of links takes 30% less disk).  Document order does it:
    # an aggregation event lists its parent's children together (sorting by the parent's
    # key as well cost 0.4 s of the 1M-SGTIN bench document's 0.8 s insert)
    _run(
        con,
        f"""INSERT INTO {links} (cmo_id, child, child_key, parent_key)
        SELECT ?, child_text, child, parent FROM {final} ORDER BY row_id""",
        [sender],
    )
    # each parent's text once, as this document writes it; a parent whose last link
    # was taken away loses its text (only links can be taken away)
    _run(
        con,
        f"""CREATE OR REPLACE TEMP TABLE _ship_parent_texts AS
        SELECT parent_key, arg_max(parent, event_index) AS parent FROM _ship_parents
        SEMI JOIN (SELECT DISTINCT event_index FROM {final})
          USING (event_index)
        GROUP BY parent_key""",
    )
    _run(
        con,
        f"""DELETE FROM {parents} WHERE cmo_id = ?
        AND parent_key IN (SELECT parent_key FROM _ship_parent_texts)""",
        [sender],
    )
    _run(con, f"INSERT INTO {parents} SELECT ?, * FROM _ship_parent_texts", [sender])
    if unlinked:
        _run(
            con,
            f"""DELETE FROM {parents} p WHERE cmo_id = ? AND NOT EXISTS (
                SELECT 1 FROM {links} a
                WHERE a.cmo_id = p.cmo_id AND a.parent_key = p.parent_key)""",
            [sender],
        )
    for table in (
        "_ship_intervals",
        "_ship_delete_all",
        "_ship_reach",
        "_ship_stored_links",
        "_ship_parent_texts",
    ):
        _run(con, f"DROP TABLE {table}")


_FEW_RUNS = 10_000
# what an exception row tells besides its outcome: the serial's GTIN and serial number,
# and the lot and expiry the state knows for it.  `_ship_serials` keeps them only for
# the serials with an exception (a million OK serials need none of these strings).
_DETAILS = ("product_code", "serial", "lot", "expiry")
_EXCEPTION = "(c_outcome <> 'OK' OR s_outcome <> 'OK' OR d_outcome <> 'OK')"
# one byte per outcome, not a string (a million serials: two million outcomes)
_OUTCOMES = ("c_outcome", "s_outcome", "d_outcome")
_OUTCOME_TYPE = f"ENUM({', '.join(repr(o) for o in _SGTIN_OUTCOMES)})"
# the text, product code and serial of an expanded EPC: its staged row, or its stored text
_EXPANDED_TEXT = f"""(SELECT x.*, coalesce(c.epc, s.epc) AS text,
        coalesce(c.product_code, s.product_code) AS product_code,
        coalesce(c.serial, s.serial) AS serial
    FROM {{rows}} x
    LEFT JOIN {STAGE_EPCS} c ON c.rowid = x.row_id
    LEFT JOIN _ship_stored s ON x.row_id IS NULL AND s.epc = x.child_text)"""


def _reconcile_serials(con: duckdb.DuckDBPyConnection, sender: str, once: bool) -> None:
    """One outcome per SGTIN and event kind, the first that applies (§6 *Reconciliation*).

    `ALREADY_SHIPPED` (shipping and decommissioning): the serial was shipped before the
    document, or — for a decommissioning — by an earlier shipping event of the document
    with the outcome `OK` (events apply in document order).
    `once`: every EPC is in `_ship_expanded` once (`_expand_shipments`), so the shipped
    serials are not grouped."""
    ((runs,),) = con.sql("SELECT count(*) FROM serial_runs").fetchall()
    # Few runs (the usual state): a range join, one match per serial (DuckDB would plan
    # an ASOF join against a tiny table as a nested loop plus a costly aggregate);
    # many runs: the ASOF join.
    known = (
        "LEFT JOIN serial_runs u ON u.pid = k.pid AND k.pseq >= u.lo AND k.pseq < u.hi"
        if runs <= _FEW_RUNS
        else "ASOF LEFT JOIN serial_runs u ON u.pid = k.pid AND k.pseq >= u.lo"
    )
    # One row per SGTIN reported (by key: its GTIN and serial): its first commissioning,
    # shipping and decommissioning event (directly or inside an expanded unit), its place
    # in the pool and status, and one outcome per event kind.  Commissioned and expanded
    # keys are grouped apart and joined (one aggregate of both was the slowest step).
    # A key's GTIN and serial come from its commissioning rows (staged with them), else
    # from its staged row or stored text (a serial shipped but not commissioned here).
    shipped = (
        """SELECT epc AS key,
            CASE WHEN kind = 'shipping' THEN event_index END AS s_event,
            CASE WHEN kind = 'decommissioning' THEN event_index END AS d_event,
            row_id, child_text
        FROM _ship_expanded WHERE epc_scheme = 'sgtin'"""
        if once
        else """SELECT epc AS key, min(event_index) FILTER (kind = 'shipping') AS s_event,
            min(event_index) FILTER (kind = 'decommissioning') AS d_event,
            min(row_id) AS row_id, any_value(child_text) AS child_text
        FROM _ship_expanded WHERE epc_scheme = 'sgtin'
        GROUP BY epc"""
    )
    # Commissioned keys are grouped only when one is listed twice (a count of distinct
    # numbers costs a third of grouping the GTIN and serial strings with them).
    listing = "FROM _ship_listed WHERE kind = 'commissioning' AND epc_scheme = 'sgtin'"
    ((listed, distinct),) = con.sql(
        f"SELECT count(*), count(DISTINCT epc_key) {listing}"
    ).fetchall()
    commissioned = (
        f"""SELECT epc_key AS key, event_index AS c_event, product_code AS c_product_code,
            serial AS c_serial {listing}"""
        if listed == distinct
        else f"""SELECT epc_key AS key, min(event_index) AS c_event,
            any_value(product_code) AS c_product_code, any_value(serial) AS c_serial
        {listing} GROUP BY epc_key"""
    )
    per_key = f"""SELECT key, c_event, s_event, d_event, row_id, child_text, c_product_code,
            c_serial FROM ({commissioned}) FULL JOIN ({shipped}) USING (key)"""
    named = f"""SELECT * EXCLUDE (c_product_code, c_serial) REPLACE (
                coalesce(c_product_code, product_code) AS product_code,
                coalesce(c_serial, serial) AS serial)
            FROM (
                SELECT * FROM per_key WHERE c_product_code IS NOT NULL
                UNION ALL BY NAME
                SELECT * FROM {_EXPANDED_TEXT.format(rows="(SELECT * FROM per_key WHERE c_product_code IS NULL)")}
            )"""
    # Its rows are never read in insertion order (every use groups, joins or sorts them):
    # without keeping that order the joins of millions of keys against the pool stay
    # within the store's memory limit instead of spilling (2M SGTINs: ~1.4x faster).
    con.execute("SET preserve_insertion_order = false")
    try:
        _create_serials(con, per_key, named, known, sender)
    finally:
        con.execute("SET preserve_insertion_order = true")
    # the same, one row per SGTIN and event kind
    _run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW _ship_outcomes AS
        SELECT 'commissioning' AS kind, key, c_event AS event_index, c_event, pid, pseq,
            c_outcome AS outcome, {", ".join(_DETAILS)}
        FROM _ship_serials WHERE c_event IS NOT NULL
        UNION ALL
        SELECT 'shipping', key, s_event, c_event, pid, pseq, s_outcome, {", ".join(_DETAILS)}
        FROM _ship_serials WHERE s_event IS NOT NULL
        UNION ALL
        SELECT 'decommissioning', key, d_event, c_event, pid, pseq, d_outcome,
            {", ".join(_DETAILS)}
        FROM _ship_serials WHERE d_event IS NOT NULL""",
    )


def _create_serials(
    con: duckdb.DuckDBPyConnection, per_key: str, named: str, known: str, sender: str
) -> None:
    """`_ship_serials`: one row per SGTIN reported, its place in the pool and status,
    one outcome per event kind (see `_reconcile_serials`)."""
    _run(
        con,
        f"""CREATE OR REPLACE TEMP TABLE _ship_serials AS
        WITH per_key AS MATERIALIZED ({per_key}),
        reported AS ({named}),
        placed AS (  -- with the arrival number of those in the pool
            SELECT r.*, p.pid, p.pseq
            FROM reported r
            LEFT JOIN serial_products sp ON sp.product_code = r.product_code
            LEFT JOIN pool p ON p.pid = sp.pid
                AND {same_serial_sql("p", serial_num_sql("r.serial"), serial_txt_sql("r.serial"))}
        ),
        found AS (
            SELECT k.*, u.lo AS run_lo, u.cmo_id, u.commissioned, u.shipped, u.lot, u.expiry
            FROM placed k {known}
        ),
        judged AS (
            SELECT f.*,
                CASE WHEN c_event IS NOT NULL THEN held END AS c_outcome,
                CASE WHEN s_event IS NULL THEN NULL
                     WHEN pseq IS NOT NULL AND shipped THEN 'ALREADY_SHIPPED'
                     ELSE held END AS s_outcome,
                CASE WHEN d_event IS NULL THEN NULL
                     WHEN pseq IS NOT NULL
                      AND (shipped OR (s_event < d_event AND held = 'OK')) THEN 'ALREADY_SHIPPED'
                     ELSE held END AS d_outcome
            FROM (
                SELECT f.*,
                    CASE WHEN f.pseq IS NULL THEN 'UNKNOWN_SERIAL'
                         WHEN cp.product_code IS NULL THEN 'NOT_PRODUCEABLE'
                         WHEN f.cmo_id IS NULL THEN 'NOT_ASSIGNED'
                         WHEN f.cmo_id <> ? THEN 'OTHER_CMO'
                         ELSE 'OK'
                    END AS held  -- the outcome but for ALREADY_SHIPPED
                FROM found f
                LEFT JOIN (SELECT DISTINCT product_code FROM cmo_products WHERE cmo_id = ?) cp
                  ON cp.product_code = f.product_code
            ) f
        )
        SELECT key, c_event, s_event, d_event, pid, pseq,
            {", ".join(f"{c}::{_OUTCOME_TYPE} AS {c}" for c in _OUTCOMES)},
            {", ".join(f"CASE WHEN {_EXCEPTION} THEN {c} END AS {c}" for c in _DETAILS)}
        FROM judged""",
        [sender, sender],
    )


def _collect_exceptions(con: duckdb.DuckDBPyConnection, file: str) -> None:
    """`_ship_exceptions`: every non-`OK` outcome with the EPC as written in the event that
    counted, each `UNKNOWN_CONTAINER`, `MALFORMED_EPC` and `MALFORMED_EXPIRY` occurrence.

    An outcome's lot (for `lot_reconciliation.csv`) is the lot of the serial's
    commissioning: its commissioning event in this document (whatever that event's
    outcome), else the lot the state keeps (§6 *Reconciliation*)."""
    sscc = "(SELECT * FROM _ship_expanded WHERE epc_scheme = 'sscc')"
    _run(
        con,
        f"""CREATE OR REPLACE TEMP TABLE _ship_exceptions AS
        WITH o AS (SELECT * FROM _ship_outcomes WHERE outcome <> 'OK'),
        written AS (  -- the EPC as written in the event that counted, for these rows only
            SELECT kind, event_index, key, min(epc) AS epc FROM (
                SELECT 'commissioning' AS kind, l.event_index, l.epc_key AS key, l.epc
                FROM _ship_listed l SEMI JOIN o
                  ON o.kind = 'commissioning' AND o.event_index = l.event_index
                 AND o.key = l.epc_key
                WHERE l.kind = 'commissioning' AND l.epc_scheme = 'sgtin'
                UNION ALL
                SELECT kind, event_index, epc, text
                FROM {_EXPANDED_TEXT.format(rows="(SELECT x.* FROM _ship_expanded x SEMI JOIN o ON o.kind = x.kind AND o.event_index = x.event_index AND o.key = x.epc WHERE x.epc_scheme = 'sgtin')")}
            ) GROUP BY ALL
        )
        SELECT ?::VARCHAR AS file, o.event_index::BIGINT AS event_index, o.kind AS event_kind,
            o.product_code, o.serial, w.epc, o.outcome,
            coalesce(e.lot, o.lot) AS lot, coalesce(e.expiry, o.expiry) AS expiry
        FROM o JOIN written w USING (kind, event_index, key)
        LEFT JOIN _ship_events e ON e.event_index = o.c_event
        UNION ALL
        SELECT ?, event_index, kind, NULL, NULL, text, 'UNKNOWN_CONTAINER', NULL, NULL
        FROM (SELECT DISTINCT event_index, kind, text FROM {_EXPANDED_TEXT.format(rows=f"(SELECT * FROM {sscc} x WHERE NOT EXISTS (SELECT 1 FROM _ship_expanded c WHERE c.event_index = x.event_index AND c.parent = x.epc))")})
        UNION ALL
        SELECT ?, event_index, kind, NULL, NULL, coalesce(epc, ''), 'MALFORMED_EPC', NULL, NULL
        FROM _ship_malformed
        UNION ALL
        SELECT ?, event_index, kind, NULL, NULL, expiry_text, 'MALFORMED_EXPIRY', NULL, NULL
        FROM _ship_events
        WHERE kind = 'commissioning' AND expiry IS NULL AND expiry_text IS NOT NULL""",
        [file, file, file, file],
    )


def _apply(con: duckdb.DuckDBPyConnection, sender: str, ctx: RunContext, file: str) -> None:
    """Persist: OK serials become commissioned (with lot/expiry), shipped or
    decommissioned; exception log."""
    # consecutive serials with the same change form one patch (`overlay` cuts the runs):
    # commissioned, with the lot and expiry of their commissioning event (where it
    # names them), and/or shipped, decommissioned; a NULL in a patch leaves the serial's
    # value as it is
    patches = patches_of(
        con,
        """SELECT pid, pseq, CASE WHEN c_outcome = 'OK' THEN c_event END AS c_event,
            CASE WHEN s_outcome = 'OK' THEN TRUE END AS shipped,
            CASE WHEN d_outcome = 'OK' THEN TRUE END AS decommissioned
        FROM _ship_serials
        WHERE c_outcome = 'OK' OR s_outcome = 'OK' OR d_outcome = 'OK'""",
        ["c_event", "shipped", "decommissioned"],
    )
    if patches.height:
        ilmd = con.sql(
            """SELECT event_index AS c_event, TRUE AS commissioned, lot, expiry
            FROM _ship_events WHERE kind = 'commissioning'"""
        ).pl()
        patches = patches.join(
            ilmd.cast({"c_event": patches.schema["c_event"]}), on="c_event", how="left"
        )
        pids = patches.get_column("pid").unique().to_list()
        changed = ["commissioned", "shipped", "decommissioned", "lot", "expiry"]
        save_runs(con, pids, overlay(load_runs(con, pids), patches, changed, unless_null=changed))
    _run(
        con,
        f"""INSERT INTO {appended_to(con, "shipping_exception_log")}
            (run_id, file, cmo_id, event_index, event_kind, product_code, serial, epc, outcome, lot, expiry)
        SELECT ?, file, ?, event_index, event_kind, product_code, serial, epc, outcome, lot, expiry
        FROM _ship_exceptions""",
        [ctx.run_id, sender],
    )


def patches_of(con: duckdb.DuckDBPyConnection, serials: str, by: list[str]) -> pl.DataFrame:
    """`transforms.serial_runs.ranges_of` of the rows of `serials` (a query of pid, pseq,
    by…), found in DuckDB: islands of consecutive numbers (`pseq` minus its rank among
    the serials with the same `by` values), so that the million serials of a large
    document never reach Polars (the 2M-SGTIN bench document peaked at 990 MB there, in
    Polars' copies).  A serial listed twice (never from `_ship_serials`: one row per
    GTIN and serial) makes patches overlap: then `ranges_of` keeps one of its rows."""
    cols = ", ".join(by)
    patches = con.sql(
        f"""SELECT pid::INTEGER AS pid, min(pseq)::BIGINT AS lo, max(pseq)::BIGINT + 1 AS hi,
            {cols}
        FROM (
            SELECT *, pseq - row_number() OVER (PARTITION BY pid, {cols} ORDER BY pseq)
                AS island
            FROM ({serials})
        )
        GROUP BY pid, island, {cols}
        ORDER BY pid, lo"""
    ).pl()
    pid, lo, hi = pl.col("pid"), pl.col("lo"), pl.col("hi")
    if patches.select(((pid == pid.shift(1)) & (lo < hi.shift(1))).any()).item():
        patches = ranges_of(con.sql(serials).pl(), by)
    return patches


def _warnings(con: duckdb.DuckDBPyConnection) -> list[str]:
    """What the document says that cannot be used, though the rest of it can."""
    out = []
    for n, first in con.sql(
        """SELECT count(*), min(event_index) FROM _ship_events
        WHERE kind = 'aggregation' AND (parent_id IS NULL OR trim(parent_id) = '')"""
    ).fetchall():
        if n:
            out.append(
                f"{n} aggregation event(s) (first: event {first}) name no parentID: their "
                "packing is not recorded; ask the CMO to resend them with the parent"
            )
    return out


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _row(doc: DocumentInfo, file: str, sender: str | None) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(SHIPPING_RECONCILIATION_COLUMNS, 0)
    row.update(
        file=file,
        sender_cmo_id=sender,
        events_read=doc.events_read,
        events_skipped=doc.events_skipped,
    )
    return row


def reconcile_document(
    con: duckdb.DuckDBPyConnection, doc: DocumentInfo, ctx: RunContext
) -> ShippingResult:
    """Apply one staged EPCIS document (SPEC §6) and describe it (§10).

    No sender → `quarantine_reason` set and nothing changed.  Otherwise every
    SGTIN commissioned, shipped or decommissioned (directly or inside a unit, as of
    its event) gets one outcome per event kind; `OK` serials become commissioned
    (with their lot and expiry), shipped or decommissioned; the document's
    aggregations are stored; every non-`OK` outcome, `UNKNOWN_CONTAINER`,
    `MALFORMED_EPC` and `MALFORMED_EXPIRY` occurrence is an exception row.
    """
    file = ctx.source_file or doc.file
    sender, reason = identify_sender(con, doc)
    row = _row(doc, file, sender)
    if sender is None:
        return ShippingResult(reconciliation=row, quarantine_reason=reason)
    try:
        _stage_rows(con)
        simple = _build_hierarchy(con, sender)
        once = _expand_shipments(con, simple)
        _store_hierarchy(con, sender, simple)
        _reconcile_serials(con, sender, once)
        _collect_exceptions(con, file)
        for table in ("_ship_expanded", "_ship_stored"):  # their memory, for what follows
            _run(con, f"DROP TABLE {table}")
        _apply(con, sender, ctx, file)
        warnings = _warnings(con)
        # the totals and OK from the serials; every other outcome is one exception row
        # (the report's schema checks that the outcomes add up to the totals)
        ((commissioned, shipped, decommissioned, ok),) = con.sql(
            """SELECT count(c_event), count(s_event), count(d_event),
                count(*) FILTER (c_outcome = 'OK') + count(*) FILTER (s_outcome = 'OK')
                + count(*) FILTER (d_outcome = 'OK')
            FROM _ship_serials"""
        ).fetchall()
        row.update(commissioned=commissioned, shipped=shipped, decommissioned=decommissioned, ok=ok)
        for outcome, n in con.sql(
            "SELECT outcome, count(*) FROM _ship_exceptions GROUP BY ALL"
        ).fetchall():
            key = _SGTIN_OUTCOMES.get(outcome, outcome.lower())  # or UNKNOWN_CONTAINER, ...
            if key in row:  # MALFORMED_EXPIRY has exception rows, no column (§10)
                row[key] = n
        exceptions = (
            con.sql(
                """SELECT file, event_index, event_kind, product_code, serial, epc, outcome
                FROM _ship_exceptions ORDER BY event_index, epc, outcome"""
            )
            .pl()
            .cast(SHIPPING_EXCEPTIONS_SCHEMA)  # type: ignore[arg-type]
        )
    finally:
        views = (
            ("VIEW", "_ship_outcomes"),
            ("VIEW", "_ship_link_rows"),
            ("VIEW", "_ship_listed"),
            ("VIEW", "_ship_events"),
        )
        for kind, table in (*views, *(("TABLE", t) for t in _TEMP)):
            try:
                _run(con, f"DROP {kind} IF EXISTS {table}")
            except duckdb.Error:  # an aborted transaction: the caller rolls back anyway
                break
    return ShippingResult(
        reconciliation=row, exceptions=exceptions, sender_cmo_id=sender, warnings=warnings
    )


def lot_reconciliation(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """`lot_reconciliation.csv` (§10, state): per CMO, product, lot and expiry of commissioning.

    `commissioned` / `shipped` / `decommissioned`: serials of that lot with an `OK`
    outcome; `exceptions`: every non-`OK` serial outcome ever reported for a serial of
    that lot, whichever event kind (the lot of its commissioning, `_collect_exceptions`).
    Sorted by cmo_id, product_code, lot, expiry.
    """
    return (
        con.sql(
            """SELECT cmo_id, product_code, lot, expiry,
                sum(c)::BIGINT AS commissioned, sum(s)::BIGINT AS shipped,
                sum(d)::BIGINT AS decommissioned, sum(x)::BIGINT AS exceptions
            FROM (
                SELECT r.cmo_id, sp.product_code, r.lot, r.expiry,
                    CASE WHEN r.commissioned THEN r.hi - r.lo ELSE 0 END AS c,
                    CASE WHEN r.shipped THEN r.hi - r.lo ELSE 0 END AS s,
                    CASE WHEN r.decommissioned THEN r.hi - r.lo ELSE 0 END AS d, 0 AS x
                FROM serial_runs r JOIN serial_products sp ON sp.pid = r.pid
                WHERE r.lot IS NOT NULL AND (r.commissioned OR r.shipped OR r.decommissioned)
                UNION ALL
                SELECT cmo_id, product_code, lot, expiry, 0, 0, 0, 1
                FROM shipping_exception_log
                WHERE lot IS NOT NULL AND outcome IN
                    ('UNKNOWN_SERIAL', 'ALREADY_SHIPPED', 'NOT_PRODUCEABLE', 'NOT_ASSIGNED', 'OTHER_CMO')
            )
            GROUP BY ALL
            ORDER BY cmo_id NULLS FIRST, product_code, lot, expiry NULLS FIRST"""
        )
        .pl()
        .cast(
            {
                "commissioned": pl.Int64,
                "shipped": pl.Int64,
                "decommissioned": pl.Int64,
                "exceptions": pl.Int64,
            }
        )
    )
