"""Bounded input for inbox CSV files (SPEC §8): the limits a file must keep before it is
parsed, checked in one streaming pass that never holds more than a chunk.

No file may make a run use memory in proportion to one of its lines or cells: a line
or a row over 1 MiB (a quoted value with line breaks counts whole toward its row), a file that is not text (a NUL byte; UTF-16, with or without a byte-order
mark), more than 10,000,000 rows or more than 1 GB quarantine the file, with a
reason that names the line and the limit, before a parser holds any of it.  The
header's own limits (columns, names) are checked on its first line by the reader.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np

LINE_LIMIT = 1 << 20  # bytes in one line, its line end not counted
MAX_FILE_BYTES = 1_000_000_000
MAX_ROWS = 10_000_000  # data rows (lines after the header)
MAX_COLUMNS = 1000
MAX_NAME = 200  # characters in one column name
_CHUNK = LINE_LIMIT  # a line within one chunk is shorter than the limit (see below)

QUOTE_FIX = (
    'write a value that holds a double quote quoted, the inner quote doubled ("A""B"), '
    "as spreadsheet tools do"
)
_SAVE_UTF8 = "save it as UTF-8 (CSV UTF-8 in spreadsheet tools)"
_SPLIT = "split it into files of at most 1 GB and 10,000,000 rows each"


class LimitExceeded(Exception):
    """The file breaks a limit of bounded input; the message is the quarantine reason."""


def _count(n: int) -> str:
    return f"{n:,}"


def _utf16_without_bom(head: bytes) -> str | None:
    """'UTF-16LE' / 'UTF-16BE' when the start of the file reads as ASCII text in UTF-16."""
    sample = head[: len(head) - len(head) % 2][:256]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if not any(odd) and all(even):
        return "UTF-16LE"
    if not any(even) and all(odd):
        return "UTF-16BE"
    return None


def check_limits(path: Path) -> None:
    """Raise `LimitExceeded` when the file at `path` breaks a limit of bounded input (§8)."""
    _check(path, LINE_LIMIT, _CHUNK)


def _check(path: Path, limit: int, chunk_size: int) -> None:
    """`check_limits` with the row limit and the read size as parameters (tests use small
    ones, to put rows across many reads); `chunk_size` must not exceed `limit`.

    Reads the file once in chunks.  A row ends at a line end outside quotes: a double
    quote opens or closes a quoted value and a doubled one inside it leaves it open, so
    a line end ends a row exactly when the quotes before it are even in number (polars
    splits a file the same way).  A quoted value with line breaks thus counts whole
    toward its row: a cell of 900 MB is a row over the limit, found before a parser holds
    it.  A chunk without a double quote, read outside quotes (nearly all of them), is
    measured by its line ends alone: a row that lies within one chunk is shorter than a
    chunk, so only a row that spans chunks can be over the limit.
    """
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise LimitExceeded(
            f"the file is {_count(size)} bytes, over the limit of 1 GB "
            f"({_count(MAX_FILE_BYTES)} bytes) for one file: {_SPLIT}"
        )
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0  # line ends before the current chunk
    rows = 0  # line ends outside quotes (ends of rows, the header's too) before it
    since = 0  # bytes of the current row before the current chunk
    row_line = 1  # the line the current row starts on
    quoted = False  # the current chunk starts inside a quoted value
    cr_before = False  # the chunk before ended with a carriage return
    with path.open("rb") as fh:
        head = fh.read(chunk_size)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise LimitExceeded(
                "the file is not UTF-8 text: it starts with a UTF-16 byte-order mark (saved as "
                f"'Unicode text'): {_SAVE_UTF8}"
            )
        offset = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
        chunk = head[offset:]
        while chunk:
            nul = chunk.find(b"\0")
            if nul >= 0:
                line = lines + chunk.count(b"\n", 0, nul) + 1
                utf16 = _utf16_without_bom(head) if lines == 0 else None
                if utf16:
                    raise LimitExceeded(
                        f"the file is not UTF-8 text: it reads as {utf16} without a byte-order "
                        f"mark (NUL bytes between the characters from line {line} on): "
                        f"{_SAVE_UTF8}"
                    )
                raise LimitExceeded(
                    f"the file is not text: line {_count(line)} holds a NUL byte (byte "
                    f"{_count(offset + nul + 1)} of the file), as a binary or "
                    f"partly written file does: send the file again as UTF-8 CSV text"
                )
            if quoted or b'"' in chunk:
                ends, line_ends, quoted_after = _row_ends(chunk, quoted)
                n_ends = len(ends)
                if n_ends:
                    over = _first_over(chunk, ends, since, cr_before, limit)
                    if over is not None:
                        k, length = over
                        start = row_line if k == 0 else _line_after(chunk, int(ends[k - 1]), lines)
                        end_line = lines + chunk.count(b"\n", 0, int(ends[k])) + 1
                        raise _too_long(start, end_line, length, chunk, limit)
                    last = int(ends[-1])
                quoted = quoted_after
            else:
                line_ends = n_ends = chunk.count(b"\n")
                if n_ends:
                    first = chunk.find(b"\n")
                    cr = chunk[first - 1 : first] == b"\r" if first else cr_before
                    length = since + first - cr
                    if length > limit:
                        raise _too_long(row_line, lines + 1, since + first, chunk, limit)
                    last = chunk.rfind(b"\n")
            if not n_ends:
                since += len(chunk)
                if since - chunk.endswith(b"\r") > limit:  # a CR may begin a CRLF line end
                    raise _too_long(row_line, lines + line_ends + 1, since, chunk, limit)
            else:
                since = len(chunk) - last - 1
                row_line = lines + line_ends + 1 - chunk.count(b"\n", last + 1)
                rows += n_ends
                if rows > MAX_ROWS + 1:  # the header, then the rows
                    raise LimitExceeded(
                        f"the file has more than {_count(MAX_ROWS)} rows (line "
                        f"{_count(lines + line_ends + 1)} and on): {_SPLIT}"
                    )
            lines += line_ends
            cr_before = chunk.endswith(b"\r")
            # UTF-8 (ASCII is: skipped unless a character began at the end of the last chunk)
            if not chunk.isascii() or decoder.getstate()[0]:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as err:
                    at = max(err.start, 0)
                    line = lines - chunk.count(b"\n", at) + 1
                    raise _not_utf8(line, chunk[at : at + 1]) from err
            offset += len(chunk)
            chunk = fh.read(chunk_size)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as err:
            raise _not_utf8(lines + 1, b"") from err


def _row_ends(chunk: bytes, quoted: bool) -> tuple[np.ndarray, int, bool]:
    """The positions of the line ends of `chunk` that end a row (outside quotes), when the
    chunk starts inside a quoted value or not; its line ends; whether it ends inside one."""
    raw = np.frombuffer(chunk, dtype=np.uint8)
    quotes = np.flatnonzero(raw == 34)
    line_ends = np.flatnonzero(raw == 10)
    inside = (np.searchsorted(quotes, line_ends) + quoted) % 2 == 1
    return line_ends[~inside], len(line_ends), (len(quotes) + quoted) % 2 == 1


def _first_over(
    chunk: bytes, ends: np.ndarray, since: int, cr_before: bool, limit: int
) -> tuple[int, int] | None:
    """(k, its length) of the first row ending in `chunk` (at `ends[k]`) longer than
    `limit`, its line end (LF or CRLF) not counted; the first began `since` bytes before
    the chunk, and `cr_before` says whether the chunk before ended with a CR."""
    raw = np.frombuffer(chunk, dtype=np.uint8)
    starts = np.concatenate(([-since], ends[:-1] + 1))
    cr = np.where(ends > 0, raw[np.maximum(ends - 1, 0)] == 13, cr_before)
    lengths = ends - starts - cr
    over = np.flatnonzero(lengths > limit)
    if not len(over):
        return None
    k = int(over[0])
    return k, int(lengths[k])


def _line_after(chunk: bytes, end: int, lines: int) -> int:
    """The line that starts after the line end at `chunk[end]` (`lines` before the chunk)."""
    return lines + chunk.count(b"\n", 0, end + 1) + 1


def _not_utf8(line: int, byte: bytes) -> LimitExceeded:
    shown = f"the byte 0x{byte[0]:02X}" if byte else "an incomplete character at its end"
    return LimitExceeded(
        f"the file is not UTF-8 text: line {_count(line)} holds {shown}, which UTF-8 text "
        f"cannot (a file saved as Latin-1 or Windows-1252?): {_SAVE_UTF8}"
    )


def _too_long(line: int, last: int, length: int, chunk: bytes, limit: int) -> LimitExceeded:
    """A row from `line` to `last` over the limit: one long line, or a quoted value whose
    line breaks run on (an unclosed quote, or a cell too long to hold)."""
    shown = f"1 MiB ({_count(limit)} bytes)" if limit == LINE_LIMIT else f"{_count(limit)} bytes"
    if last > line:
        return LimitExceeded(
            f"a double quote opened on line {_count(line)} is not closed within the limit "
            f"of {shown} for one row: the row runs on to line {_count(last)} and at least "
            f"{_count(length)} bytes; close the quote, and {QUOTE_FIX}"
        )
    what = "the header (line 1)" if line == 1 else f"line {_count(line)}"
    hint = (
        "the lines end with a carriage return only (an old Mac format): save it with "
        "Windows or Unix line ends"
        if b"\r" in chunk and b"\n" not in chunk
        else "a CSV line holds one row; check that the file is a CSV file of this kind"
    )
    return LimitExceeded(
        f"{what} is longer than the limit of {shown} for one "
        f"line (at least {_count(length)} bytes): {hint}"
    )
