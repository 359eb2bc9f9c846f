"""Reading inbox CSV files by the conventions of SPEC §3.1.

UTF-8 with or without BOM; header required; names matched case-insensitively
after trimming; cells trimmed, empty = not given; a semicolon header makes the
file semicolon-separated (with a warning).  Every cell stays a string: codes
never become numbers.  The parsed frame carries `_line`, the row's file line
(header = 1).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from connectors.csv_limits import (
    LINE_LIMIT,
    MAX_COLUMNS,
    MAX_NAME,
    QUOTE_FIX,
    LimitExceeded,
    check_limits,
)
from transforms.codes import GS1_CHARSET_82
from transforms.rejects import LINE, REJECT_SCHEMA, empty_rejects


class FileRejected(Exception):
    """The whole file is rejected (quarantine); the message is the reason."""


@dataclass
class ParsedCsv:
    header: list[str]  # normalised column names, in file order
    rows: pl.DataFrame  # all String columns + `_line`
    semicolon: bool
    # rows that could not be split into the header's columns (REJECT_SCHEMA), not in `rows`
    rejects: pl.DataFrame = field(default_factory=empty_rejects)


@dataclass(frozen=True)
class FileScan:
    """What one pass over a file's bytes tells: its SHA-256, and whether it is *plain*.

    A plain file is ASCII (after an optional byte-order mark) and holds no blank
    byte (space, tab, vertical tab, form feed), no double quote, no NUL (a file with
    one is not text: the scan stops looking) and no carriage return outside a CRLF
    line end: none of its cells can start or end with a blank or span lines, so the
    per-column scans for them can be skipped.

    `gs1_text`: the file is plain and every byte (after an optional byte-order mark)
    is a character of the GS1 character set 82 or a line end, so every cell is made of
    GS1 characters (no quote, so no cell spans lines) and a serial needs only its
    length checked.
    """

    sha256: str
    plain: bool
    gs1_text: bool = False


_BOM = b"\xef\xbb\xbf"
_NOT_PLAIN = (b" ", b"\t", b"\x0b", b"\x0c", b'"', b"\x00")
# GS1 characters (the double quote aside: a quoted cell may span lines) and line ends
_GS1_TEXT = GS1_CHARSET_82.replace('"', "").encode("ascii") + b"\r\n"


def scan_file(path: Path, chunk_size: int = 1 << 20) -> FileScan:
    """Hash `path` and find whether it is plain and GS1 text (`FileScan`), in one read."""
    digest = hashlib.sha256()
    plain = gs1 = True
    pending_cr = False  # the previous read ended with a CR: this one must start with LF
    with path.open("rb") as fh:
        first = True
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
            if not plain:
                continue
            body = chunk[len(_BOM) :] if first and chunk.startswith(_BOM) else chunk
            first = False
            # what is left after taking away GS1 characters and line ends: usually nothing
            gs1 = gs1 and not body.translate(None, _GS1_TEXT)
            broken_crlf = pending_cr and not body.startswith(b"\n")
            # ASCII without blank or quote: already known of GS1 text
            clean = gs1 or (body.isascii() and not any(b in body for b in _NOT_PLAIN))
            if broken_crlf or not clean:
                plain = False
            elif b"\r" in body:  # Windows line ends: every CR must be followed by an LF
                raw = np.frombuffer(body, dtype=np.uint8)
                cr = raw[:-1] == 13
                plain = bool(np.array_equal(cr, cr & (raw[1:] == 10)))
                pending_cr = raw[-1] == 13
            else:
                pending_cr = False
    plain = plain and not pending_cr
    return FileScan(digest.hexdigest(), plain, gs1 and plain)


def _first_line(path: Path) -> str:
    with path.open("rb") as fh:
        raw = fh.readline(1 << 20)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise FileRejected(
            "the file is not UTF-8 text: save it as UTF-8 (CSV UTF-8 in spreadsheet tools)"
        ) from err
    text = text.rstrip("\r\n")
    if "\r" in text:
        raise FileRejected(
            "the lines of the file end with a carriage return only (an old Mac format): save "
            "it with Windows or Unix line ends (CSV UTF-8 in spreadsheet tools)"
        )
    return text


_QUOTE_FIX = QUOTE_FIX
# a quoted value may span lines; one longer than this is an unclosed quote (the csv
# module's default limit, 128 KiB, is below the line limit)
_FIELD_LIMIT = 4 * LINE_LIMIT
csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))


def _shown(text: str, width: int = 40) -> str:
    """A value for a message: escaped (no control character), cut to `width`."""
    cut = text if len(text) <= width else text[:width] + "…"
    return cut.encode("unicode_escape").decode("ascii").replace("\\u2026", "…")


def _check_header(header: list[str]) -> None:
    """The header's limits (§8 bounded input) and an empty column name."""
    if len(header) > MAX_COLUMNS:
        raise FileRejected(
            f"the header (line 1) has {len(header):,} columns, over the limit of "
            f"{MAX_COLUMNS:,}: check that the file is a CSV file of this kind and that its "
            "first line is the header row"
        )
    for i, name in enumerate(header, start=1):
        if len(name) > MAX_NAME:
            raise FileRejected(
                f"column {i} of the header (line 1) is named by {len(name):,} characters "
                f"('{_shown(name)}'), over the limit of {MAX_NAME}: check that the first line "
                "is the header row"
            )
    if any(h == "" for h in header):
        raise FileRejected(
            "the header row has an empty column name: name every column or remove it"
        )


def _record_problem(start: int, line: int, err: csv.Error) -> str:
    """The reason for a CSV error of the csv module: what, on which line, what to do."""
    text = str(err)
    if "field larger than field limit" in text or "unexpected end of data" in text:
        reach = "the end of the file" if "end of data" in text else f"line {line:,}"
        return (
            f"a double quote opened on line {start:,} is never closed: the value runs on to "
            f"{reach}; close the quote, and {_QUOTE_FIX}"
        )
    return f"line {line:,} cannot be read as CSV ({text}): {_QUOTE_FIX}"


def _quote_problem(path: Path, sep: str) -> str | None:
    """Where a file that polars cannot parse breaks the quoting rules, as a reason (the
    first such record, by the csv module read strictly), or None."""
    raw: list[str] = []  # the file lines of the record being read

    def lines(fh: Iterable[str]) -> Iterator[str]:
        for text in fh:
            raw.append(text)
            yield text

    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(lines(fh), delimiter=sep, strict=True)
        end = 0
        try:
            for cells in reader:
                start, end = end + 1, reader.line_num
                record, raw[:] = list(raw), []
                if len(record) == 1 and any('"' in c for c in cells):
                    bare = _bare_quoted(record[0].rstrip("\r\n"), sep)
                    if bare is not None:
                        return (
                            f"line {start:,}: the value '{_shown(bare)}' holds a double quote "
                            f"but is not quoted itself: {_QUOTE_FIX}"
                        )
        except csv.Error as err:
            if "expected after" in str(err):
                return (
                    f"line {reader.line_num:,}: a quoted value goes on after its closing "
                    f"quote: {_QUOTE_FIX}"
                )
            return _record_problem(end + 1, reader.line_num, err)
    return None


def _bare_quoted(line: str, sep: str) -> str | None:
    """The first unquoted value of a one-line record that holds a double quote, or None."""
    i, n = 0, len(line)
    while i <= n:
        if line[i : i + 1] == '"':  # a quoted value: to its closing quote ("" is a quote)
            i += 1
            while i < n and not (line[i] == '"' and line[i + 1 : i + 2] != '"'):
                i += 2 if line[i] == '"' else 1
            i = line.find(sep, i + 1)
        else:
            end = line.find(sep, i)
            value = line[i : n if end < 0 else end]
            if '"' in value:
                return value
            i = end
        if i < 0:
            return None
        i += 1
    return None


def _records(path: Path, sep: str) -> Iterator[tuple[int, list[str]]]:
    """Every data record with the file line it starts on (header = line 1; blank lines
    count), read by Python's csv module: for the rare files a line count cannot number
    (quoted line breaks) or split (rows with too many cells)."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        end = 0
        try:
            next(reader, None)
            end = reader.line_num
            for cells in reader:
                yield end + 1, cells
                end = reader.line_num
        except csv.Error as err:  # a value longer than a line may be (`_FIELD_LIMIT`)
            raise FileRejected(_record_problem(end + 1, reader.line_num, err)) from err


def _record_start_lines(path: Path, sep: str) -> list[int]:
    """The file line on which each data record starts."""
    return [line for line, _ in _records(path, sep)]


def _cleaned(name: str, spaced: bool, empty: bool, column: pl.Series) -> pl.Expr:
    """Cells trimmed, empty = not given; columns that need neither are not copied
    (a pool file has tens of millions of cells)."""
    col = pl.col(name).cast(pl.String)
    if (spaced and column.str.contains(r"^\s|\s$").any()) or empty:
        return col.str.strip_chars().replace("", None)
    return col


def read_inbox_csv(path: Path, plain: Callable[[], bool] | None = None) -> ParsedCsv:
    """Parse an inbox CSV into strings; raise `FileRejected` when it cannot be read at all.

    `plain`, when given, answers whether the file is plain (`scan_file`, often
    computed beside the parse): then no cell needs trimming and none spans lines,
    and the columns are not scanned for blanks.
    """
    try:
        check_limits(path)  # bounded input (§8): before any of the file is held
    except LimitExceeded as err:
        raise FileRejected(str(err)) from err
    first = _first_line(path)
    if not first.strip():
        raise FileRejected("the file has no header row: the first line must name the columns")
    semicolon = ";" in first and "," not in first
    sep = ";" if semicolon else ","
    if "\t" in first and "," not in first and ";" not in first:
        raise FileRejected(
            "the file is tab-separated (the header, line 1, holds tabs and no comma): save it "
            "comma-separated (CSV UTF-8 in spreadsheet tools)"
        )
    try:
        cells = next(csv.reader(io.StringIO(first), delimiter=sep, strict=True))
    except csv.Error as err:
        raise FileRejected(
            f"the header (line 1) cannot be read as CSV ({err}): {_QUOTE_FIX}"
        ) from err
    header = [h.strip().lower() for h in cells]
    _check_header(header)
    names = [f"c{i}" for i in range(len(header))]
    ragged: list[tuple[int, list[str]]] = []  # rows with more cells than the header
    try:
        try:
            frame = _read_cells(path, sep, names, truncate=False)
        except pl.exceptions.ComputeError as err:
            if "more fields" not in str(err):
                raise
            # rare: find those rows (rejected below), read the others as they are
            ragged = _ragged_records(path, sep, len(names))
            frame = _read_cells(path, sep, names, truncate=True)
    except pl.exceptions.NoDataError:
        frame = pl.DataFrame(schema={n: pl.String for n in names})
    except pl.exceptions.PolarsError as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "utf-8" in text.lower() or "utf8" in text.lower():
            raise FileRejected(
                "the file is not UTF-8 text: save it as UTF-8 (CSV UTF-8 in spreadsheet tools)"
            ) from err
        problem = _quote_problem(path, sep)
        if problem is not None:
            raise FileRejected(problem) from err
        if "malformed" in text.lower():
            raise FileRejected(
                f"the file cannot be read as CSV ({text}): most often a double quote inside "
                f"a value that is not quoted itself; {_QUOTE_FIX}"
            ) from err
        raise FileRejected(f"the file cannot be read as CSV ({text}): fix the file") from err
    if frame.width != len(names):  # pragma: no cover - polars guarantees the width
        raise FileRejected("the rows do not match the header: fix the file")
    lines: pl.Expr = pl.int_range(2, pl.len() + 2, dtype=pl.Int64)
    # one scan per column, the columns side by side on all cores: any empty cell and,
    # unless the file is known to be plain, any whitespace (line breaks included) —
    # ASCII blanks by a plain substring search, a column with any non-ASCII text by
    # the full Unicode `\s`
    skip_blanks = plain is not None and plain()
    ascii_blanks = [" ", "\t", "\n", "\r", "\x0b", "\x0c"]
    scan = frame.select(
        *[(pl.col(n) == "").any().alias(f"e{n}") for n in names],
        *[pl.col(n).null_count().alias(f"n{n}") for n in names],
        *(
            []
            if skip_blanks
            else [
                *[pl.col(n).str.contains_any(ascii_blanks).any().alias(f"s{n}") for n in names],
                *[
                    (pl.col(n).str.len_bytes() != pl.col(n).str.len_chars()).any().alias(f"u{n}")
                    for n in names
                ],
            ]
        ),
    ).row(0, named=True)
    spaced = {
        n: not skip_blanks
        and (
            bool(scan[f"s{n}"])
            or bool(scan[f"u{n}"] and frame.get_column(n).str.contains(r"\s").any())
        )
        for n in names
    }
    line_break = pl.any_horizontal(
        [pl.col(n).str.contains("[\r\n]") for n in names if spaced[n]] or [pl.lit(False)]
    ).any()
    if frame.height and any(spaced.values()) and frame.select(line_break).item():
        # a quoted cell spans lines: the row index no longer gives the file line
        starts = _record_start_lines(path, sep)
        if len(starts) >= frame.height:
            lines = pl.lit(pl.Series(starts[: frame.height], dtype=pl.Int64))
    unique = len(set(header)) == len(header)
    frame = frame.select(
        [
            _cleaned(n, spaced[n], bool(scan[f"e{n}"]), frame.get_column(n)).alias(
                h if unique else n
            )
            for n, h in zip(names, header, strict=True)
        ]
    )
    frame = frame.with_columns(lines.alias(LINE))
    data_cols = [c for c in frame.columns if c != LINE]
    may_be_blank = all(scan[f"n{n}"] or scan[f"e{n}"] or spaced[n] for n in names)
    if data_cols and may_be_blank:  # a blank line is null in every column
        # blank lines keep their numbers but are not rows
        filled = frame.select(
            pl.any_horizontal([pl.col(c).is_not_null() for c in data_cols])
        ).to_series()
        if not filled.all():
            frame = frame.filter(filled)
    rejects = empty_rejects()
    if ragged:
        frame, rejects = _without_ragged(frame, ragged, header, sep)
    return ParsedCsv(header=header, rows=frame, semicolon=semicolon, rejects=rejects)


def _read_cells(path: Path, sep: str, names: list[str], *, truncate: bool) -> pl.DataFrame:
    """Every cell as text (`truncate`: cells beyond the header's columns are dropped)."""
    return pl.read_csv(
        path,
        separator=sep,
        has_header=True,
        new_columns=names,
        infer_schema=False,
        quote_char='"',
        encoding="utf8",
        truncate_ragged_lines=truncate,
    )


def _ragged_records(path: Path, sep: str, width: int) -> list[tuple[int, list[str]]]:
    """(file line, cells) of every record with more than `width` cells."""
    return [(line, cells) for line, cells in _records(path, sep) if len(cells) > width]


def _without_ragged(
    frame: pl.DataFrame, ragged: list[tuple[int, list[str]]], header: list[str], sep: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Take the rows with too many cells out of `frame`, as rejected rows (§3.1: a bad row
    is rejected, the good rows of the file are applied)."""
    shown = "semicolon" if sep == ";" else "comma"
    rejects = pl.DataFrame(
        [
            (
                line,
                header[-1],
                sep.join(cells[len(header) :]),
                "cell_count",
                f"the row has {len(cells)} cells but the header has {len(header)} columns: a "
                f'value that holds a {shown} must be quoted ("A{sep}B"), as spreadsheet tools '
                "do, or the extra cells removed",
            )
            for line, cells in ragged
        ],
        schema=REJECT_SCHEMA,
        orient="row",
    )
    lines = pl.Series([line for line, _ in ragged], dtype=pl.Int64)
    return frame.filter(~pl.col(LINE).is_in(lines.implode())), rejects
