"""The inbox: recognising file kinds, settling, archiving and quarantining (SPEC §3, §9).

No file is ever deleted: a processed file moves to `archive/<run_id>/`, a file
rejected whole moves to `quarantine/<run_id>/` with `<name>.reason.txt` beside it.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from connectors.outbox import fsync_dir

# (kind, prefix, extensions) in processing order (SPEC §3 table).
KINDS: list[tuple[str, str, tuple[str, ...]]] = [
    ("products", "products_", ("csv",)),
    ("cmos", "cmos_", ("csv",)),
    ("partnerships", "partnerships_", ("csv",)),
    ("serial_pool", "serial_pool_", ("csv",)),
    ("serial_generate", "serial_generate_", ("csv",)),
    ("assignments", "assignments_", ("csv",)),
    ("serial_returns", "serial_returns_", ("csv",)),
    ("contract_keys", "contract_keys_", ("csv",)),
    ("contracts", "contracts_", ("csv",)),
    ("contract_lines", "contract_lines_", ("csv",)),
    ("receipts", "receipts_", ("csv",)),
    ("orders", "orders_", ("csv",)),
    ("partner_requests", "partner_requests_", ("csv",)),
    ("shipping", "shipping_", ("xml", "json", "jsonld")),  # EPCIS XML or JSON-LD (§6)
    ("exports", "exports_", ("csv",)),
]
KIND_ORDER = {kind: i for i, (kind, _, _) in enumerate(KINDS)}
# the reason beside a file whose name matches no kind (§3): the start the spec names, then
# the fix, with the extensions the kinds take
UNRECOGNISED_REASON = (
    "unrecognised file kind: the name must start with a kind prefix such as products_, "
    "cmos_, serial_pool_, assignments_, exports_ … (see SPEC §3) and end in .csv "
    "(shipping_ files: .xml, .json or .jsonld)"
)

ARCHIVE = "archive"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class InboxFile:
    path: Path
    kind: str | None  # None: no kind matches the name

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class InboxScan:
    files: list[InboxFile]  # recognised and settled, in processing order
    unrecognised: list[InboxFile]
    waiting: list[Path]  # hidden, temporary or not yet settled: left for the next run
    # settled files whose name is not valid UTF-8: quarantined under a safe name (§8)
    badly_named: list[Path] = field(default_factory=list)


def is_utf8_name(name: str) -> bool:
    """Whether a file name read from the disk is valid UTF-8 (Python keeps the bytes it
    could not decode as lone surrogates, which no text output can hold)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_name(name: str) -> str:
    """The name with every byte that is not UTF-8 shown escaped (`products_\\xff.csv`)."""
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def _percent(err: UnicodeError) -> tuple[str, int]:
    assert isinstance(err, UnicodeDecodeError)
    return "".join(f"%{b:02X}" for b in err.object[err.start : err.end]), err.end


codecs.register_error("cmi_percent", _percent)


def safe_name(name: str) -> str:
    """A name the file may take in the quarantine: every byte that is not UTF-8 becomes
    `%XX` (`products_%FF.csv`); a valid name stays as it is."""
    return os.fsencode(name).decode("utf-8", errors="cmi_percent")


def kind_of(name: str) -> str | None:
    """The file kind of a file name (case-insensitive prefix and extension), or None."""
    low = name.lower()
    for kind, prefix, extensions in KINDS:
        if (
            low.startswith(prefix)
            and low.rpartition(".")[2] in extensions
            and len(low) > len(prefix)
        ):
            return kind
    return None


def _left_in_place(name: str) -> bool:
    low = name.lower()
    return name.startswith(".") or low.endswith(".tmp") or low.endswith(".part")


def scan_inbox(inbox: Path, settle_seconds: float, now: float | None = None) -> InboxScan:
    """Take the inbox as it is now: what to process, what is unrecognised, what waits."""
    now = time.time() if now is None else now
    files: list[InboxFile] = []
    unrecognised: list[InboxFile] = []
    waiting: list[Path] = []
    badly_named: list[Path] = []
    if not inbox.exists():
        return InboxScan(files, unrecognised, waiting)
    for entry in sorted(inbox.iterdir(), key=lambda p: p.name):
        if not entry.is_file():
            continue
        if _left_in_place(entry.name):
            waiting.append(entry)
            continue
        try:
            mtime = entry.stat().st_mtime
        except FileNotFoundError:
            continue
        if now - mtime < settle_seconds:
            waiting.append(entry)
            continue
        if not is_utf8_name(entry.name):
            badly_named.append(entry)
            continue
        kind = kind_of(entry.name)
        if kind is None:
            unrecognised.append(InboxFile(entry, None))
        else:
            files.append(InboxFile(entry, kind))
    files.sort(key=lambda f: (KIND_ORDER[f.kind or ""], f.name))
    return InboxScan(files, unrecognised, waiting, badly_named)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _free_target(folder: Path, name: str) -> Path:
    target = folder / name
    n = 2
    while target.exists():
        stem, dot, ext = name.rpartition(".")
        target = folder / (f"{stem}-{n}.{ext}" if dot else f"{name}-{n}")
        n += 1
    return target


def archive_file(path: Path, inbox: Path, run_id: str) -> Path:
    """Move a processed file to `inbox/archive/<run_id>/`."""
    folder = inbox / ARCHIVE / run_id
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_target(folder, path.name)
    os.rename(path, target)
    fsync_dir(folder)
    return target


def quarantine_file(path: Path, inbox: Path, run_id: str, reason: str) -> Path:
    """Move a file rejected whole to `inbox/quarantine/<run_id>/` with its reason beside it."""
    folder = inbox / QUARANTINE / run_id
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_target(folder, safe_name(path.name))
    reason_path = folder / (target.name + ".reason.txt")
    tmp = reason_path.with_name(reason_path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(reason.rstrip("\n") + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, reason_path)
    os.rename(path, target)
    fsync_dir(folder)
    return target
