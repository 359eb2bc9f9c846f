"""Bounded input for inbox CSV files (SPEC §8): the limits a file must keep before it is
parsed, checked in one streaming pass that never holds more than a chunk.

No file may make a run use memory in proportion to one of its lines: a line over
1 MiB, a file that is not text (a NUL byte; UTF-16, with or without a byte-order
mark), more than 10,000,000 rows or more than 1 GB quarantine the file, with a
reason that names the line and the limit, before a parser holds any of it.  The
header's own limits (columns, names) are checked on its first line by the reader.
"""

from __future__ import annotations

import codecs
from pathlib import Path

LINE_LIMIT = 1 << 20  # bytes in one line, its line end not counted
MAX_FILE_BYTES = 1_000_000_000
MAX_ROWS = 10_000_000  # data rows (lines after the header)
MAX_COLUMNS = 1000
MAX_NAME = 200  # characters in one column name
_CHUNK = LINE_LIMIT  # a line within one chunk is shorter than the limit (see below)

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
    """Raise `LimitExceeded` when the file at `path` breaks a limit of bounded input (§8).

    Reads the file once in 1 MiB chunks.  A line that lies within one chunk is shorter
    than a chunk, so only a line that spans chunks can be over the limit: it is
    measured by the bytes since the last line end.
    """
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise LimitExceeded(
            f"the file is {_count(size)} bytes, over the limit of 1 GB "
            f"({_count(MAX_FILE_BYTES)} bytes) for one file: {_SPLIT}"
        )
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0  # line ends before the current chunk
    since = 0  # bytes of the current line before the current chunk
    with path.open("rb") as fh:
        head = fh.read(_CHUNK)
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
            first = chunk.find(b"\n")
            if first < 0:
                since += len(chunk)
                if since > LINE_LIMIT:
                    raise _too_long(lines + 1, since, chunk)
            else:
                if since + first > LINE_LIMIT + (chunk[first - 1 : first] == b"\r"):
                    raise _too_long(lines + 1, since + first, chunk)
                since = len(chunk) - chunk.rfind(b"\n") - 1
                lines += chunk.count(b"\n")
                if lines > MAX_ROWS + 1:  # the header, then the rows
                    raise LimitExceeded(
                        f"the file has more than {_count(MAX_ROWS)} rows (line "
                        f"{_count(lines + 1)} and on): {_SPLIT}"
                    )
            # UTF-8 (ASCII is: skipped unless a character began at the end of the last chunk)
            if not chunk.isascii() or decoder.getstate()[0]:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as err:
                    at = max(err.start, 0)
                    line = lines - chunk.count(b"\n", at) + 1
                    raise _not_utf8(line, chunk[at : at + 1]) from err
            offset += len(chunk)
            chunk = fh.read(_CHUNK)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as err:
            raise _not_utf8(lines + 1, b"") from err


def _not_utf8(line: int, byte: bytes) -> LimitExceeded:
    shown = f"the byte 0x{byte[0]:02X}" if byte else "an incomplete character at its end"
    return LimitExceeded(
        f"the file is not UTF-8 text: line {_count(line)} holds {shown}, which UTF-8 text "
        f"cannot (a file saved as Latin-1 or Windows-1252?): {_SAVE_UTF8}"
    )


def _too_long(line: int, length: int, chunk: bytes) -> LimitExceeded:
    what = "the header (line 1)" if line == 1 else f"line {_count(line)}"
    hint = (
        "the lines end with a carriage return only (an old Mac format): save it with "
        "Windows or Unix line ends"
        if b"\r" in chunk
        else "a CSV line holds one row; check that the file is a CSV file of this kind"
    )
    return LimitExceeded(
        f"{what} is longer than the limit of 1 MiB ({_count(LINE_LIMIT)} bytes) for one "
        f"line (at least {_count(length)} bytes): {hint}"
    )
