"""The inbox: file kinds, processing order, settling, archive and quarantine (SPEC §3, §9)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from connectors.inbox import (
    KINDS,
    archive_file,
    kind_of,
    quarantine_file,
    scan_inbox,
    sha256_of,
)

NOW = 1_700_000_000.0
SPEC_ORDER = [
    "products", "cmos", "partnerships", "serial_pool", "serial_generate", "assignments",
    "serial_returns", "contract_keys", "contracts", "contract_lines", "receipts", "orders",
    "partner_requests", "shipping", "exports",
]  # fmt: skip


def _drop(folder: Path, name: str, age: float = 60.0, data: bytes = b"x\n") -> Path:
    path = folder / name
    path.write_bytes(data)
    os.utime(path, (NOW - age, NOW - age))
    return path


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_the_kinds_are_the_spec_table_in_its_order() -> None:
    assert [k for k, _, _ in KINDS] == SPEC_ORDER
    assert all(prefix == kind + "_" for kind, prefix, _ in KINDS)
    assert {ext for kind, _, ext in KINDS if kind != "shipping"} == {("csv",)}
    assert dict((k, e) for k, _, e in KINDS)["shipping"] == ("xml", "json", "jsonld")


@pytest.mark.parametrize(
    ("kind", "prefix", "ext"), [(k, p, e) for k, p, extensions in KINDS for e in extensions]
)
def test_every_kind_is_recognised_case_insensitively(kind: str, prefix: str, ext: str) -> None:
    assert kind_of(f"{prefix}2024-05-17.{ext}") == kind
    assert kind_of(f"{prefix.upper()}Day1.{ext.upper()}") == kind
    assert kind_of(f"{prefix.title()}x.{ext.title()}") == kind


@pytest.mark.parametrize(
    "name",
    [
        "products.csv",  # no underscore after the prefix
        "products_x.txt",
        "products_x.xml",
        "shipping_x.csv",
        "shipping_x.jsonl",
        "shipping_x.json.bak",
        "my_products_x.csv",
        "serial_x.csv",
        "contract_x.csv",
        "readme",
        "products_x.csv.bak",
    ],
)
def test_names_matching_no_kind_are_not_recognised(name: str) -> None:
    assert kind_of(name) is None


def test_similar_prefixes_are_told_apart() -> None:
    assert kind_of("contracts_1.csv") == "contracts"
    assert kind_of("contract_keys_1.csv") == "contract_keys"
    assert kind_of("contract_lines_1.csv") == "contract_lines"
    assert kind_of("serial_pool_1.csv") == "serial_pool"
    assert kind_of("serial_generate_1.csv") == "serial_generate"
    assert kind_of("serial_returns_1.csv") == "serial_returns"


def test_files_are_processed_by_kind_in_table_order_then_by_name(tmp_path: Path) -> None:
    names = [
        "exports_a.csv", "shipping_z.xml", "partner_requests_a.csv", "orders_b.csv",
        "orders_a.csv", "receipts_a.csv", "contract_lines_a.csv", "contracts_a.csv",
        "contract_keys_a.csv", "serial_returns_a.csv", "assignments_b.csv", "assignments_a.csv",
        "serial_generate_a.csv", "serial_pool_a.csv", "partnerships_a.csv", "cmos_a.csv",
        "products_b.csv", "products_a.csv",
    ]  # fmt: skip
    for name in names:
        _drop(tmp_path, name)
    scan = scan_inbox(tmp_path, settle_seconds=5, now=NOW)
    assert [f.name for f in scan.files] == [
        "products_a.csv", "products_b.csv", "cmos_a.csv", "partnerships_a.csv",
        "serial_pool_a.csv", "serial_generate_a.csv", "assignments_a.csv", "assignments_b.csv",
        "serial_returns_a.csv", "contract_keys_a.csv", "contracts_a.csv", "contract_lines_a.csv",
        "receipts_a.csv", "orders_a.csv", "orders_b.csv", "partner_requests_a.csv",
        "shipping_z.xml", "exports_a.csv",
    ]  # fmt: skip
    assert scan.unrecognised == [] and scan.waiting == []


def test_hidden_temporary_and_partial_files_are_left_in_place(tmp_path: Path) -> None:
    for name in (".products_a.csv", "products_a.csv.tmp", "products_a.csv.PART", "x.TMP"):
        _drop(tmp_path, name)
    scan = scan_inbox(tmp_path, settle_seconds=5, now=NOW)
    assert scan.files == [] and scan.unrecognised == []
    assert sorted(p.name for p in scan.waiting) == [
        ".products_a.csv",
        "products_a.csv.PART",
        "products_a.csv.tmp",
        "x.TMP",
    ]


def test_a_file_modified_within_settle_seconds_waits_for_the_next_run(tmp_path: Path) -> None:
    _drop(tmp_path, "products_new.csv", age=2)
    _drop(tmp_path, "unknown_new.txt", age=2)
    _drop(tmp_path, "products_old.csv", age=6)
    scan = scan_inbox(tmp_path, settle_seconds=5, now=NOW)
    assert [f.name for f in scan.files] == ["products_old.csv"]
    assert sorted(p.name for p in scan.waiting) == ["products_new.csv", "unknown_new.txt"]
    assert scan.unrecognised == []
    assert [f.name for f in scan_inbox(tmp_path, settle_seconds=0, now=NOW).files] == [
        "products_new.csv",
        "products_old.csv",
    ]


def test_unrecognised_files_are_detected(tmp_path: Path) -> None:
    _drop(tmp_path, "notes.txt")
    _drop(tmp_path, "products.csv")
    scan = scan_inbox(tmp_path, settle_seconds=5, now=NOW)
    assert scan.files == []
    assert sorted(f.name for f in scan.unrecognised) == ["notes.txt", "products.csv"]
    assert all(f.kind is None for f in scan.unrecognised)


def test_folders_in_the_inbox_are_not_files_to_process(tmp_path: Path) -> None:
    (tmp_path / "archive" / "20240101T000000").mkdir(parents=True)
    _drop(tmp_path / "archive" / "20240101T000000", "products_a.csv")
    (tmp_path / "products_dir.csv").mkdir()
    scan = scan_inbox(tmp_path, settle_seconds=5, now=NOW)
    assert scan.files == [] and scan.unrecognised == [] and scan.waiting == []


def test_a_missing_inbox_is_an_empty_inbox(tmp_path: Path) -> None:
    scan = scan_inbox(tmp_path / "none", settle_seconds=5, now=NOW)
    assert scan.files == [] and scan.unrecognised == [] and scan.waiting == []


def test_archive_moves_the_file_under_the_run_id(tmp_path: Path) -> None:
    path = _drop(tmp_path, "products_a.csv", data=b"product_code\n")
    target = archive_file(path, tmp_path, "20240517T143005")
    assert target == tmp_path / "archive" / "20240517T143005" / "products_a.csv"
    assert target.read_bytes() == b"product_code\n"
    assert not path.exists()


def test_archiving_a_second_file_of_the_same_name_keeps_both(tmp_path: Path) -> None:
    first = archive_file(_drop(tmp_path, "products_a.csv", data=b"1"), tmp_path, "R1")
    second = archive_file(_drop(tmp_path, "products_a.csv", data=b"2"), tmp_path, "R1")
    assert first.name == "products_a.csv" and second.name == "products_a-2.csv"
    assert first.read_bytes() == b"1" and second.read_bytes() == b"2"


def test_quarantine_moves_the_file_with_its_reason_beside_it(tmp_path: Path) -> None:
    path = _drop(tmp_path, "notes.txt", data=b"hello")
    target = quarantine_file(path, tmp_path, "20240517T143005", "unrecognised file kind")
    folder = tmp_path / "quarantine" / "20240517T143005"
    assert target == folder / "notes.txt"
    assert target.read_bytes() == b"hello"
    assert (folder / "notes.txt.reason.txt").read_text(encoding="utf-8") == (
        "unrecognised file kind\n"
    )
    assert not path.exists()


def test_quarantining_the_same_name_twice_keeps_both_files_and_both_reasons(
    tmp_path: Path,
) -> None:
    quarantine_file(_drop(tmp_path, "x.csv", data=b"1"), tmp_path, "R1", "first reason")
    quarantine_file(_drop(tmp_path, "x.csv", data=b"2"), tmp_path, "R1", "second reason")
    folder = tmp_path / "quarantine" / "R1"
    assert (folder / "x.csv").read_bytes() == b"1"
    assert (folder / "x-2.csv").read_bytes() == b"2"
    assert (folder / "x.csv.reason.txt").read_text(encoding="utf-8") == "first reason\n"
    assert (folder / "x-2.csv.reason.txt").read_text(encoding="utf-8") == "second reason\n"


def test_nothing_is_deleted_by_a_scan_and_its_moves(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("products_a.csv", "notes.txt", ".hidden", "cmos_a.csv.tmp"):
        _drop(inbox, name, data=name.encode())
    scan = scan_inbox(inbox, settle_seconds=5, now=NOW)
    for f in scan.files:
        archive_file(f.path, inbox, "R1")
    for f in scan.unrecognised:
        quarantine_file(f.path, inbox, "R1", "unrecognised file kind")
    assert _tree(inbox) == [
        ".hidden",
        "archive/R1/products_a.csv",
        "cmos_a.csv.tmp",
        "quarantine/R1/notes.txt",
        "quarantine/R1/notes.txt.reason.txt",
    ]
    for rel in (".hidden", "archive/R1/products_a.csv", "quarantine/R1/notes.txt"):
        assert (inbox / rel).read_bytes() == Path(rel).name.encode()


def test_sha256_is_of_the_file_content(tmp_path: Path) -> None:
    path = _drop(tmp_path, "a.csv", data=b"abc")
    assert sha256_of(path) == hashlib.sha256(b"abc").hexdigest()
