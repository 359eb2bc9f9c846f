"""What is still to write and to deliver, and what a delivery did (SPEC §8, §8.1, §10).

Every export file and partner answer is recorded in `outbox_files` with its serials.
Two marks follow it through the night: *written* (the file is in the outbox, synced)
and *delivered* (the CMO's `[delivery]` URL holds it under its final name).  These
functions decide from the state alone — no file, clock or network: the run's clock is
handed in, the outcomes of the uploads are handed in by the flow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import duckdb
import polars as pl

DELIVERED, ALREADY_THERE, FAILED = "delivered", "already_there", "failed"
OUTCOMES = (DELIVERED, ALREADY_THERE, FAILED)

# deliveries.csv (§10): one row per file a run tried to deliver, oldest file first
DELIVERIES_COLUMNS = ["cmo_id", "file_name", "url", "outcome", "attempts", "delivered_at", "message"]  # fmt: skip
DELIVERIES_SCHEMA = {
    "cmo_id": pl.String,
    "file_name": pl.String,
    "url": pl.String,
    "outcome": pl.String,
    "attempts": pl.Int64,
    "delivered_at": pl.String,
    "message": pl.String,
}


@dataclass(frozen=True)
class Pending:
    """A recorded file waiting for delivery to its CMO."""

    file_id: int
    cmo_id: str
    rel_path: str  # under the outbox
    file_name: str
    attempts: int  # tries so far


@dataclass(frozen=True)
class Outcome:
    """What one try to deliver a file ended with (`message`: why it failed, or a note)."""

    file_id: int
    outcome: str  # delivered | already_there | failed
    message: str = ""


@dataclass(frozen=True)
class DeliveryRow:
    """One row of deliveries.csv (§10), as the run report shows it."""

    cmo_id: str
    file_name: str
    url: str
    outcome: str
    attempts: int
    delivered_at: str  # YYYY-MM-DDTHH:MM:SS of the run's clock; "" for failed
    message: str


# --------------------------------------------------------------------------- written (§8)


def unwritten_files(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Recorded files not yet marked written, oldest first: the next run writes them."""
    return [
        int(r[0])
        for r in con.execute(
            "SELECT file_id FROM outbox_files WHERE written_at IS NULL ORDER BY file_id"
        ).fetchall()
    ]


def mark_written(
    con: duckdb.DuckDBPyConnection, file_ids: Iterable[int], when: dt.datetime
) -> None:
    """Mark files written to the outbox (after their rename and the folder's fsync)."""
    ids = sorted(set(file_ids))
    if ids:
        con.execute(
            "UPDATE outbox_files SET written_at = ? "
            "WHERE file_id IN (SELECT unnest(?::BIGINT[])) AND written_at IS NULL",
            [when, ids],
        )


def ask_again(con: duckdb.DuckDBPyConnection, file_ids: Iterable[int]) -> None:
    """A file asked for again (`cmi redeliver`, a partner repeating a request whose answer
    left the outbox, §5.5): it is written and delivered again, as if new."""
    ids = sorted(set(file_ids))
    if ids:
        con.execute(
            "UPDATE outbox_files SET written_at = NULL, delivered_at = NULL, delivered_to = NULL "
            "WHERE file_id IN (SELECT unnest(?::BIGINT[]))",
            [ids],
        )


@dataclass(frozen=True)
class Recorded:
    file_id: int
    cmo_id: str
    rel_path: str
    file_name: str


def find_recorded(
    con: duckdb.DuckDBPyConnection, names: Sequence[str]
) -> tuple[list[Recorded], list[str], dict[str, list[str]]]:
    """The recorded files a person names (`cmi redeliver`): a file name, or its path under
    the outbox (`serials/<cmo_id>/<name>`, `partners/<cmo_id>/<name>`).  Returns the files
    found (in the order named, each once), the names that match none, and the names that
    match several (with their paths)."""
    rows = con.execute(
        "SELECT file_id, cmo_id, rel_path, file_name FROM outbox_files ORDER BY file_id"
    ).fetchall()
    by_name: dict[str, list[Recorded]] = {}
    for fid, cmo, rel, name in rows:
        rec = Recorded(int(fid), str(cmo), str(rel), str(name))
        by_name.setdefault(rec.file_name, []).append(rec)
        by_name.setdefault(rec.rel_path, []).append(rec)
    found: list[Recorded] = []
    unknown: list[str] = []
    ambiguous: dict[str, list[str]] = {}
    for name in names:
        key = name.strip().replace("\\", "/")
        key = key[2:] if key.startswith("./") else key
        hits = by_name.get(key, [])
        if not hits:
            unknown.append(name)
        elif len(hits) > 1:
            ambiguous[name] = [h.rel_path for h in hits]
        elif hits[0] not in found:
            found.append(hits[0])
    return found, unknown, ambiguous


# --------------------------------------------------------------------------- delivered (§8.1)


def pending_deliveries(con: duckdb.DuckDBPyConnection, cmo_ids: Iterable[str]) -> list[Pending]:
    """The files to deliver now: of a CMO that has a `[delivery]` section, written, not yet
    marked delivered — oldest first (§8.1)."""
    cmos = sorted(set(cmo_ids))
    if not cmos:
        return []
    rows = con.execute(
        """SELECT file_id, cmo_id, rel_path, file_name, coalesce(delivery_attempts, 0)
           FROM outbox_files
           WHERE cmo_id IN (SELECT unnest(?::VARCHAR[]))
             AND written_at IS NOT NULL AND delivered_at IS NULL
           ORDER BY file_id""",
        [cmos],
    ).fetchall()
    return [Pending(int(f), str(c), str(r), str(n), int(a)) for f, c, r, n, a in rows]


def record_outcomes(
    con: duckdb.DuckDBPyConnection,
    outcomes: Sequence[Outcome],
    tried: Mapping[int, Pending],
    urls: Mapping[str, str],
    when: dt.datetime,
) -> list[DeliveryRow]:
    """Mark what the tries did: every try counts (`delivery_attempts`); `delivered` and
    `already_there` mark the file delivered at the run's clock, to its CMO's URL (`urls`:
    cmo_id -> URL, never a secret).  `tried`: the files as `pending_deliveries` gave them.
    Returns the tries as deliveries.csv rows, in the order given."""
    for o in outcomes:
        if o.outcome not in OUTCOMES:
            raise ValueError(f"unknown delivery outcome {o.outcome!r}")
    done: dict[str, list[int]] = {}
    failed: list[int] = []
    for o in outcomes:
        if o.outcome == FAILED:
            failed.append(o.file_id)
        else:
            done.setdefault(tried[o.file_id].cmo_id, []).append(o.file_id)
    for cmo_id, ids in done.items():
        con.execute(
            """UPDATE outbox_files SET delivery_attempts = coalesce(delivery_attempts, 0) + 1,
                   delivered_at = ?, delivered_to = ?
               WHERE file_id IN (SELECT unnest(?::BIGINT[]))""",
            [when, urls.get(cmo_id, ""), ids],
        )
    if failed:
        con.execute(
            """UPDATE outbox_files SET delivery_attempts = coalesce(delivery_attempts, 0) + 1
               WHERE file_id IN (SELECT unnest(?::BIGINT[]))""",
            [failed],
        )
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
    return [
        DeliveryRow(
            (p := tried[o.file_id]).cmo_id,
            p.file_name,
            urls.get(p.cmo_id, ""),
            o.outcome,
            p.attempts + 1,
            "" if o.outcome == FAILED else stamp,
            o.message,
        )  # fmt: skip
        for o in outcomes
    ]


def deliveries_frame(rows: Sequence[DeliveryRow]) -> pl.DataFrame:
    """deliveries.csv (§10) from a run's rows, in the order tried."""
    frame = pl.DataFrame(
        {c: [getattr(r, c) for r in rows] for c in DELIVERIES_COLUMNS}, schema=DELIVERIES_SCHEMA
    )
    # blank cells, not empty quoted strings ("" is how a CSV writer tells "" from nothing)
    return frame.with_columns(pl.col("delivered_at", "message").replace("", None))


def deliveries_summary(rows: Sequence[DeliveryRow], pending: int) -> dict[str, int]:
    """The `deliveries` block of run_summary.json (§10): the run's tries by outcome and the
    files still waiting after the run."""
    return {
        DELIVERED: sum(r.outcome == DELIVERED for r in rows),
        ALREADY_THERE: sum(r.outcome == ALREADY_THERE for r in rows),
        FAILED: sum(r.outcome == FAILED for r in rows),
        "pending": pending,
    }


def count_pending(con: duckdb.DuckDBPyConnection, cmo_ids: Iterable[str]) -> int:
    """How many files wait for delivery (`pending` of run_summary.json)."""
    return len(pending_deliveries(con, cmo_ids))
