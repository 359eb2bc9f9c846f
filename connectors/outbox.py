"""The outbox: serial export files, partner answers and reports, written atomically (SPEC §8, §10).

Every file is written to a temporary name in its final folder, flushed, fsynced
and renamed, so a reader never sees half a file and a crash leaves either the
old state or the new one.  Export files and partner answers are *recorded* in
the state first; `write_recorded` writes recorded files (those the state has not
marked *written*: after each file's commit, and at the start of the next run when
a run was stopped before), and says which were written so the flow can mark them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from transforms.serials import outbox_rows

# a text cell starting so is read as a formula by spreadsheets (§10)
FORMULA_START = r"^[=+\-@\t\r]"


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` by temp-file-and-rename in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class NotAllWritten(OSError):
    """Some files could not be written; `written` holds what was (each renamed into place
    and its folder fsynced), in the order asked."""

    def __init__(
        self, message: str, written: list[Any], code: int | None = None, filename: str | None = None
    ) -> None:
        # with the first failure's errno and file, when known: a full or read-only outbox
        # stays recognisable (connectors/faults.py)
        if code is None:
            super().__init__(message)
        else:
            super().__init__(code, message, filename)
        self.written = written


def write_many_atomic(files: list[tuple[Path, Callable[[], bytes]]], workers: int = 4) -> None:
    """Write many files by temp-file-and-rename: contents made and fsynced side by side
    (both let go of the GIL), then renamed, then each folder fsynced once.

    A file that cannot be written (its folder blocked by a file, a full disk) does not
    hold the others back: they are written, then one `NotAllWritten` names every failure
    and lists the paths written.
    """
    pid = os.getpid()
    failed: dict[Path, BaseException] = {}

    def stage(item: tuple[Path, Callable[[], bytes]]) -> Path | None:
        path, make = item
        tmp = path.with_name(f".{path.name}.{pid}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as fh:
                fh.write(make())
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            failed[path] = err
            with contextlib.suppress(OSError):
                tmp.unlink()
            return None
        return tmp

    with ThreadPoolExecutor(max_workers=workers) as pool:
        staged = list(pool.map(stage, files))
    written: set[Path] = set()
    for tmp, (path, _) in zip(staged, files, strict=True):
        if tmp is None:
            continue
        try:
            os.replace(tmp, path)
            written.add(path.parent)
        except OSError as err:
            failed[path] = err
    for folder in sorted(written):
        fsync_dir(folder)
    if failed:
        shown = "; ".join(f"{path}: {err}" for path, err in list(failed.items())[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        # the first failure's errno and file: a full or read-only outbox stays recognisable
        first_path, first = next(iter(failed.items()))
        code = first.errno if isinstance(first, OSError) else None
        raise NotAllWritten(
            f"{len(failed)} file(s) could not be written: {shown}{more}",
            [path for path, _ in files if path not in failed],
            code,
            str(first_path),
        )


def remove_stale_temp_files(outbox: Path) -> int:
    """Remove the temporary files a killed run left in the outbox (`.<name>.<pid>.tmp`, never
    renamed into place) and its unfinished report folder (`reports/.<run_id>.part`); one
    run at a time holds the state, so none is in use."""
    removed = 0
    for pattern in ("serials/*/.*.tmp", "partners/*/.*.tmp", "reports/.*.tmp", "reports/*/.*.tmp"):
        for tmp in outbox.glob(pattern):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    for part in outbox.glob(f"reports/.*{_PART}"):
        shutil.rmtree(part, ignore_errors=True)
        removed += 1
    return removed


_PART = ".part"


def report_staging(outbox: Path, run_id: str) -> Path:
    """An empty folder in which the run's report folder is written before it is put in
    place whole (`publish_report_folder`): a report folder is there with all its files or
    not at all (§8 no report row lost)."""
    staging = outbox / "reports" / f".{run_id}{_PART}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def publish_report_folder(staging: Path, folder: Path) -> Path:
    """Rename the written `staging` folder to `folder` (which must not exist) and sync it."""
    fsync_dir(staging)
    os.rename(staging, folder)
    fsync_dir(folder.parent)
    return folder


def report_folders_written(outbox: Path, run_ids: Iterable[str]) -> list[str]:
    """Those of `run_ids` whose report folder is in the outbox."""
    return [r for r in run_ids if (outbox / "reports" / r).is_dir()]


SERIAL_CSV_HEADER = b"product_code,serial\n"


def serial_csv_bytes(frame: pl.DataFrame) -> bytes:
    """The export/answer format: `product_code,serial`, RFC 4180 quoting, `\\n`, UTF-8 without BOM."""
    buf = io.BytesIO()
    frame.select("product_code", "serial").write_csv(
        buf, include_header=True, line_terminator="\n", quote_style="necessary"
    )
    return buf.getvalue()


def _inside(root: Path, rel_path: str) -> Path:
    target = (root / rel_path).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write {rel_path} outside the outbox")
    return target


# a value holding one of these is quoted in a CSV file (RFC 4180)
_QUOTED = [",", '"', "\r", "\n"]


def serial_csv_files(rows: pl.DataFrame) -> dict[int, bytes]:
    """The export-format bytes (`serial_csv_bytes`) of every file of `rows`
    (file_id, product_code, serial; each file's rows together, in file order).

    The usual file — one product code, no value that needs quotes — is its serials
    joined by line end and product code, in one step.  Otherwise all rows are written
    as one CSV body and cut after each file's last line end (a GS1 serial holds no
    line break, which is checked: a value with one falls back to one write per file).
    """
    if rows.height == 0:
        return {}
    files = rows.group_by("file_id", maintain_order=True).agg(
        pl.len().alias("n"),
        pl.col("product_code").first().alias("code"),
        pl.col("product_code").n_unique().alias("codes"),
    )
    serials = rows.get_column("serial")
    if (
        bool((files.get_column("codes") == 1).all())
        and not files.get_column("code").str.contains_any(_QUOTED).any()
        and not serials.str.contains_any(_QUOTED).any()
    ):
        return _joined_files(files, serials)
    buf = io.BytesIO()
    rows.select("product_code", "serial").write_csv(
        buf, include_header=False, line_terminator="\n", quote_style="necessary"
    )
    body = buf.getbuffer()
    ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == ord("\n"))
    if len(ends) != rows.height:
        return {
            int(key[0]): serial_csv_bytes(part)  # type: ignore[call-overload]
            for key, part in rows.partition_by("file_id", as_dict=True).items()
        }
    cuts = (ends[files.get_column("n").cum_sum().to_numpy() - 1] + 1).tolist()
    out: dict[int, bytes] = {}
    start = 0
    for file_id, end in zip(files.get_column("file_id").to_list(), cuts, strict=True):
        out[int(file_id)] = b"".join((SERIAL_CSV_HEADER, body[start:end]))
        start = end
    return out


def _joined_files(files: pl.DataFrame, serials: pl.Series) -> dict[int, bytes]:
    """Files of one product code whose values need no quotes: header, then each serial
    after the code and a comma, one per line."""
    out: dict[int, bytes] = {}
    start = 0
    for file_id, n, code, _ in files.iter_rows():
        lines = serials.slice(start, n).str.join(f"\n{code},").item()
        out[int(file_id)] = b"".join(
            (SERIAL_CSV_HEADER, code.encode(), b",", lines.encode(), b"\n")
        )
        start += n
    return out


def _content_of(contents: dict[int, bytes], file_id: int) -> bytes:
    return contents.get(file_id, SERIAL_CSV_HEADER)  # a file without serials: the header


def recorded_bytes(con: duckdb.DuckDBPyConnection, file_ids: Iterable[int]) -> dict[int, bytes]:
    """The bytes of recorded files, made from the state (exactly what `write_recorded`
    writes): for a delivery whose file has left the outbox."""
    ids = sorted(set(file_ids))
    contents = serial_csv_files(outbox_rows(con, ids)) if ids else {}
    return {fid: _content_of(contents, fid) for fid in ids}


_SERIALS_PER_BATCH = 4_000_000  # serials fetched and written at a time: bounds the memory


def write_recorded(
    con: duckdb.DuckDBPyConnection,
    outbox: Path,
    file_ids: Iterable[int],
    twins: dt.datetime | None = None,
) -> list[int]:
    """Write the recorded export files / partner answers `file_ids` into the outbox from
    the state (temp file, fsync, rename, fsync of the folder), whether or not a file of
    that name is there.  Returns the ids written, in id order; when some cannot be
    written, the others still are and `NotAllWritten` lists the ids written in `written`
    (§8: the flow marks exactly those *written*).  `twins`: also write each one's `.xlsx`
    twin beside it (§5.4, `[reports] partner_xlsx`), dated by this clock; a file counts
    as written when its twin is too.
    """
    ids = sorted(set(file_ids))
    if not ids:
        return []
    recorded = [
        (int(fid), rel, int(n))
        for fid, rel, n in con.execute(
            "SELECT file_id, rel_path, count FROM outbox_files "
            "WHERE file_id IN (SELECT unnest(?::BIGINT[])) ORDER BY file_id",
            [ids],
        ).fetchall()
    ]
    paths = {fid: _inside(outbox, rel) for fid, rel, _ in recorded}
    # batches of at most _SERIALS_PER_BATCH serials, and at least two when there is
    # more than one file, written side by side: one batch's serials are read while
    # another's are written
    limit = min(_SERIALS_PER_BATCH, max(1, -(-sum(n for _, _, n in recorded) // 2)))
    batches: list[list[tuple[int, str, int]]] = []
    size = limit
    for item in recorded:
        if size >= limit:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item[2]

    def write(batch: list[tuple[int, str, int]]) -> BaseException | None:
        try:
            rows = outbox_rows(con.cursor(), [fid for fid, _, _ in batch])
            contents = serial_csv_files(rows)
            files: list[tuple[Path, Callable[[], bytes]]] = [
                (paths[fid], partial(_content_of, contents, fid)) for fid, _, _ in batch
            ]
            if twins is not None:
                files.extend(_twins(rows, batch, outbox, twins))
            write_many_atomic(files, workers=2)
        except BaseException as err:  # noqa: BLE001 - gathered below, with what was written
            return err
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        errors = [(b, e) for b, e in zip(batches, pool.map(write, batches), strict=True) if e]
    if not errors:
        return [fid for fid, _, _ in recorded]
    lost: set[int] = set()
    for batch, err in errors:
        done = set(err.written) if isinstance(err, NotAllWritten) else set()
        lost.update(
            fid
            for fid, _, _ in batch
            if paths[fid] not in done
            or (twins is not None and paths[fid].with_suffix(".xlsx") not in done)
        )
    message = "; ".join(
        (e.strerror or str(e))
        if isinstance(e, NotAllWritten)
        else str(e)
        if isinstance(e, OSError)
        else f"{type(e).__name__}: {e}"
        for _, e in errors
    )
    written = [fid for fid, _, _ in recorded if fid not in lost]
    first = errors[0][1]
    if isinstance(first, OSError) and first.errno is not None:
        raise NotAllWritten(message, written, first.errno, first.filename) from first
    raise NotAllWritten(message, written) from first


def _twins(
    rows: pl.DataFrame, batch: list[tuple[int, str, int]], outbox: Path, clock: dt.datetime
) -> list[tuple[Path, Callable[[], bytes]]]:
    """The `.xlsx` twin (same name, `.xlsx`) of each file of the batch, made from its rows."""
    from connectors.report_xlsx import serial_twin

    parts = {int(key[0]): part for key, part in rows.partition_by("file_id", as_dict=True).items()}  # type: ignore[call-overload]
    empty = rows.clear()
    return [
        (
            _inside(outbox, rel).with_suffix(".xlsx"),
            partial(serial_twin, parts.get(fid, empty), clock),
        )
        for fid, rel, _ in batch
    ]


def formula_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix a `'` to every text cell a spreadsheet would read as a formula (§10): one that
    starts with `=`, `+`, `-`, `@`, a tab or a carriage return — free text and codes from
    partners' files alike.  Numbers are not text and stay as they are."""
    exprs = [
        pl.when(pl.col(name).str.contains(FORMULA_START))
        .then(pl.lit("'") + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name, dtype in frame.schema.items()
        if dtype == pl.String
    ]
    return frame.with_columns(exprs) if exprs else frame


def report_csv_bytes(frame: pl.DataFrame, columns: list[str]) -> bytes:
    """A report for people: exactly `columns` (header always present), every text cell
    formula-safe.  Export files and partner answers are not reports: their serials are
    written as issued (`serial_csv_bytes`)."""
    if frame.height == 0:
        frame = pl.DataFrame(schema={c: frame.schema.get(c, pl.String) for c in columns})
    frame = formula_safe(frame.select(columns))
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=True, line_terminator="\n", quote_style="necessary")
    return buf.getvalue()


def write_report(folder: Path, name: str, frame: pl.DataFrame, columns: list[str]) -> None:
    write_atomic(folder / name, report_csv_bytes(frame, columns))


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def write_latest(outbox: Path, run_id: str) -> None:
    # the run id alone, so that a script can use the file's content as it is
    write_atomic(outbox / "reports" / "LATEST", run_id.encode("utf-8"))
