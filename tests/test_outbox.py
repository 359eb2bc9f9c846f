"""The outbox: export file format, report CSVs, recorded files written from the state (SPEC §5.4, §8, §10)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import polars as pl
import pytest
from helpers_serials import DEMO, make_ctx, rows, seed, valid_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.outbox import (
    NotAllWritten,
    remove_stale_temp_files,
    report_csv_bytes,
    serial_csv_bytes,
    serial_csv_files,
    write_atomic,
    write_latest,
    write_many_atomic,
    write_recorded,
    write_report,
)
from schemas.serials import AssignmentsFile, ExportsFile, PartnerRequestsFile
from transforms.serials import apply_assignments, apply_exports, apply_partner_requests

CTX = make_ctx()


def _serials(*values: str) -> pl.DataFrame:
    return pl.DataFrame({"product_code": [DEMO] * len(values), "serial": list(values)})


# --------------------------------------------------------------------------- export format


def test_export_content_is_product_code_and_serial_with_lf_and_no_bom() -> None:
    data = serial_csv_bytes(_serials("A1", "B2"))
    assert data == f"product_code,serial\n{DEMO},A1\n{DEMO},B2\n".encode()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert b"\r" not in data


def test_serials_with_commas_and_quotes_are_quoted_by_rfc_4180() -> None:
    data = serial_csv_bytes(_serials("A,B", 'C"D', "E'F"))
    assert data == (f'product_code,serial\n{DEMO},"A,B"\n{DEMO},"C""D"\n{DEMO},E\'F\n'.encode())
    back = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert [r[1] for r in back[1:]] == ["A,B", 'C"D', "E'F"]


def test_serials_are_written_exactly_as_issued_even_when_they_look_like_formulas() -> None:
    data = serial_csv_bytes(_serials("=1+2", "-5", "+A", "@x", "007"))
    assert [line.split(",")[1] for line in data.decode().splitlines()[1:]] == [
        "=1+2", "-5", "+A", "@x", "007",
    ]  # fmt: skip


def test_an_empty_export_still_has_its_header() -> None:
    assert serial_csv_bytes(_serials()) == b"product_code,serial\n"


# --------------------------------------------------------------------------- reports


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_every_text_cell_that_starts_like_a_formula_gets_a_leading_quote(start: str) -> None:
    """§10: free text and partners' codes alike (lots, serials, EPCs, order numbers,
    customers …); numbers are not text and stay as they are."""
    frame = pl.DataFrame(
        {"cmo_id": [f"{start}C1"], "lot": [f"{start}1+1"], "order_no": [f"{start}SO"], "n": [-3]}
    )
    data = report_csv_bytes(frame, ["cmo_id", "lot", "order_no", "n"])
    row = list(csv.reader(io.StringIO(data.decode(), newline="")))[1]
    assert row == [f"'{start}C1", f"'{start}1+1", f"'{start}SO", "-3"]


def test_text_cells_that_do_not_start_like_a_formula_are_unchanged() -> None:
    frame = pl.DataFrame({"message": ["a=b", "ok", None, "'quoted", " =x", "0-1"]})
    data = report_csv_bytes(frame, ["message"])
    assert data.decode().splitlines() == ["message", "a=b", "ok", "", "'quoted", " =x", "0-1"]


def test_export_files_are_for_machines_and_keep_their_serials_as_issued() -> None:
    frame = pl.DataFrame({"product_code": ["11223344556675"] * 2, "serial": ["-A1", "=1+1"]})
    assert serial_csv_bytes(frame).decode().splitlines()[1:] == [
        "11223344556675,-A1",
        "11223344556675,=1+1",
    ]


def test_a_report_without_rows_is_its_header_only() -> None:
    columns = ["file", "line", "column", "value", "rule", "message"]
    assert report_csv_bytes(pl.DataFrame(), columns) == b"file,line,column,value,rule,message\n"


def test_a_report_has_exactly_the_given_columns_in_their_order() -> None:
    frame = pl.DataFrame({"b": [1], "a": ["x,y"], "extra": ["z"]})
    assert report_csv_bytes(frame, ["a", "b"]) == b'a,b\n"x,y",1\n'


def test_write_report_replaces_the_file_atomically_without_leftovers(tmp_path: Path) -> None:
    write_report(tmp_path, "r.csv", pl.DataFrame({"a": [1]}), ["a"])
    write_report(tmp_path, "r.csv", pl.DataFrame({"a": [2]}), ["a"])
    assert (tmp_path / "r.csv").read_bytes() == b"a\n2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_write_atomic_creates_the_folders(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a" / "b" / "f.csv", b"x")
    assert (tmp_path / "a" / "b" / "f.csv").read_bytes() == b"x"


def test_latest_names_the_run(tmp_path: Path) -> None:
    write_latest(tmp_path, "20240517T143005")
    assert (tmp_path / "reports" / "LATEST").read_text(encoding="utf-8") == "20240517T143005"


_CS82 = "!\"%&'()*+,-./0123456789:;<=>?ABCZ_abcz"


@settings(max_examples=100, deadline=None)
@given(
    files=st.lists(
        st.tuples(
            st.sampled_from([DEMO, "04000000000013"]),
            st.lists(st.text(_CS82, min_size=1, max_size=20), min_size=1, max_size=6),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_many_files_cut_from_one_body_equal_one_write_per_file(
    files: list[tuple[str, list[str]]],
) -> None:
    frame = pl.DataFrame(
        {
            "file_id": [i for i, (_, serials) in enumerate(files) for _ in serials],
            "product_code": [code for code, serials in files for _ in serials],
            "serial": [s for _, serials in files for s in serials],
        }
    )
    expected = {
        i: serial_csv_bytes(pl.DataFrame({"product_code": [code] * len(ss), "serial": ss}))
        for i, (code, ss) in enumerate(files)
    }
    assert serial_csv_files(frame) == expected


@pytest.mark.parametrize(
    ("codes", "serials"),
    [
        ([DEMO, DEMO, DEMO], ["A1", "B2", "C3"]),  # the usual file: joined in one step
        ([DEMO, "04000000000013", DEMO], ["A1", "B2", "C3"]),  # two codes in one file
        ([DEMO, DEMO, DEMO], ["A1", 'B"2', "C,3"]),  # values that need quotes
    ],
)
def test_every_way_of_making_a_file_gives_the_csv_of_its_rows(
    codes: list[str], serials: list[str]
) -> None:
    frame = pl.DataFrame({"file_id": [7, 7, 7], "product_code": codes, "serial": serials})
    assert serial_csv_files(frame) == {7: serial_csv_bytes(frame.drop("file_id"))}


def test_a_value_with_a_line_break_is_still_cut_at_the_right_row() -> None:
    # never a GS1 serial, but the writer must not cut a file in the middle of a value
    frame = pl.DataFrame(
        {"file_id": [1, 1, 2], "product_code": [DEMO] * 3, "serial": ["A\nB", "C", "D"]}
    )
    assert serial_csv_files(frame) == {
        1: serial_csv_bytes(frame.filter(pl.col("file_id") == 1).drop("file_id")),
        2: serial_csv_bytes(frame.filter(pl.col("file_id") == 2).drop("file_id")),
    }


# --------------------------------------------------------------------------- write_recorded


def _recorded() -> duckdb.DuckDBPyConnection:
    """Two export files and one partner answer, recorded in the state, none on disk."""
    con = seed(products=[DEMO], cmos={"C1": [DEMO], "P1": [DEMO]}, names={"C1": "Acme"},
               partners=["P1"], pool={DEMO: ["A,1", 'B"2', "C3", "D4", "E5"]})  # fmt: skip
    frame = rows(cmo_id=["C1", "P1"], product_code=DEMO, quantity=["3", "2"])
    apply_assignments(con, valid_rows(AssignmentsFile, frame), CTX)
    frame = rows(cmo_id="C1", product_code=DEMO, quantity=["2", "1"])
    apply_exports(con, valid_rows(ExportsFile, frame), CTX)
    frame = rows(request_id="REQ-1", cmo_id="P1", product_code=DEMO, quantity="2")
    apply_partner_requests(con, valid_rows(PartnerRequestsFile, frame), CTX)
    return con


def _ids(con: duckdb.DuckDBPyConnection, kind: str | None = None) -> list[int]:
    where = "" if kind is None else f"WHERE kind = '{kind}'"
    return [
        r[0]
        for r in con.execute(
            f"SELECT file_id FROM outbox_files {where} ORDER BY file_id"
        ).fetchall()
    ]


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_write_recorded_writes_the_files_asked_for_from_the_state(tmp_path: Path) -> None:
    con = _recorded()
    assert write_recorded(con, tmp_path, _ids(con)) == _ids(con)
    first = f"serials/C1/{DEMO}_Acme_2_20240517143005.csv"
    second = f"serials/C1/{DEMO}_Acme_1_20240517143005.csv"
    assert _tree(tmp_path) == {
        first: f'product_code,serial\n{DEMO},"A,1"\n{DEMO},"B""2"\n'.encode(),
        second: f"product_code,serial\n{DEMO},C3\n".encode(),
        "partners/P1/REQ-1.csv": f"product_code,serial\n{DEMO},D4\n{DEMO},E5\n".encode(),
    }


def test_write_recorded_writes_only_the_files_asked_for(tmp_path: Path) -> None:
    con = _recorded()
    partner = _ids(con, "partner")
    assert write_recorded(con, tmp_path, partner) == partner
    assert list(_tree(tmp_path)) == ["partners/P1/REQ-1.csv"]
    assert write_recorded(con, tmp_path, []) == []


def test_write_recorded_replaces_a_file_of_the_same_name(tmp_path: Path) -> None:
    # asked for again (cmi redeliver): the recorded content, whatever is there
    con = _recorded()
    write_recorded(con, tmp_path, _ids(con))
    before = _tree(tmp_path)
    (tmp_path / "partners/P1/REQ-1.csv").write_bytes(b"edited by hand\n")
    write_recorded(con, tmp_path, _ids(con, "partner"))
    assert _tree(tmp_path) == before


def test_write_recorded_refuses_a_path_outside_the_outbox(tmp_path: Path) -> None:
    con = _recorded()
    con.execute("UPDATE outbox_files SET rel_path = '../escape.csv' WHERE kind = 'partner'")
    with pytest.raises(ValueError, match="outside the outbox"):
        write_recorded(con, tmp_path / "outbox", _ids(con))
    assert not (tmp_path / "escape.csv").exists()


def test_write_recorded_names_what_it_wrote_when_a_folder_is_blocked(tmp_path: Path) -> None:
    con = _recorded()
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "P1").write_text("a file where a folder should be")
    with pytest.raises(NotAllWritten, match="REQ-1.csv") as err:
        write_recorded(con, tmp_path, _ids(con))
    assert err.value.written == _ids(con, "export")
    assert sorted(_tree(tmp_path)) == [
        "partners/P1",
        f"serials/C1/{DEMO}_Acme_1_20240517143005.csv",
        f"serials/C1/{DEMO}_Acme_2_20240517143005.csv",
    ]


def test_a_file_that_cannot_be_written_does_not_hold_the_others_back(tmp_path: Path) -> None:
    (tmp_path / "serials").mkdir()
    (tmp_path / "serials" / "BLOCKED").write_text("a file where a folder should be")
    files = [
        (tmp_path / "serials" / "A" / "a.csv", lambda: b"a\n"),
        (tmp_path / "serials" / "BLOCKED" / "b.csv", lambda: b"b\n"),
        (tmp_path / "serials" / "C" / "c.csv", lambda: b"c\n"),
    ]
    with pytest.raises(OSError, match=r"1 file\(s\) could not be written: .*b\.csv") as err:
        write_many_atomic(files)
    assert isinstance(err.value, NotAllWritten)
    assert err.value.written == [files[0][0], files[2][0]]
    assert (tmp_path / "serials" / "A" / "a.csv").read_bytes() == b"a\n"
    assert (tmp_path / "serials" / "C" / "c.csv").read_bytes() == b"c\n"
    assert not list(tmp_path.rglob("*.tmp"))


def test_temporary_files_a_killed_run_left_are_removed(tmp_path: Path) -> None:
    left = [
        tmp_path / "serials" / "ACME" / ".ACME_x.csv.4242.tmp",
        tmp_path / "partners" / "BIO" / ".REQ-1.csv.4242.tmp",
        tmp_path / "reports" / ".LATEST.4242.tmp",
    ]
    kept = [tmp_path / "serials" / "ACME" / "ACME_x.csv", tmp_path / "reports" / "LATEST"]
    for path in left + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert remove_stale_temp_files(tmp_path) == 3
    assert [p.exists() for p in left + kept] == [False, False, False, True, True]
