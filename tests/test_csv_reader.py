"""Reading inbox CSV files by the conventions of SPEC §3.1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.csv_reader import FileRejected, read_inbox_csv, scan_file
from schemas.base import validate_rows
from schemas.serials import SerialPoolFile


def _write(tmp_path: Path, data: bytes, name: str = "serial_pool_1.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeffproduct_code,serial\n11223344556675,A1\n".encode())
    parsed = read_inbox_csv(path)
    assert parsed.header == ["product_code", "serial"]
    assert parsed.rows.get_column("product_code").to_list() == ["11223344556675"]


def test_header_names_are_matched_case_insensitively_after_trimming(tmp_path: Path) -> None:
    path = _write(tmp_path, b" Product_Code ,  SERIAL\n11223344556675,A1\n")
    parsed = read_inbox_csv(path)
    assert parsed.header == ["product_code", "serial"]
    assert sorted(parsed.rows.columns) == ["_line", "product_code", "serial"]


def test_cells_are_trimmed_and_an_empty_cell_means_not_given(tmp_path: Path) -> None:
    path = _write(tmp_path, b"cmo_id,cmo_name,street1\n  CMO1 ,  Acme Pharma  ,   \nCMO2,,x\n")
    frame = read_inbox_csv(path).rows
    assert frame.get_column("cmo_id").to_list() == ["CMO1", "CMO2"]
    assert frame.get_column("cmo_name").to_list() == ["Acme Pharma", None]
    assert frame.get_column("street1").to_list() == [None, "x"]


def test_codes_stay_strings_with_their_leading_zeros(tmp_path: Path) -> None:
    path = _write(tmp_path, b"product_code,quantity\n00000000000017,0010\n")
    frame = read_inbox_csv(path).rows
    assert frame.row(0, named=True) == {
        "product_code": "00000000000017",
        "quantity": "0010",
        "_line": 2,
    }


def test_a_semicolon_header_makes_the_file_semicolon_separated(tmp_path: Path) -> None:
    path = _write(tmp_path, b"product_code;serial\n11223344556675;A,1\n")
    parsed = read_inbox_csv(path)
    assert parsed.semicolon is True
    assert parsed.header == ["product_code", "serial"]
    assert parsed.rows.get_column("serial").to_list() == ["A,1"]


def test_a_comma_header_is_read_comma_separated_without_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, b"product_code,serial\n11223344556675,A;1\n")
    parsed = read_inbox_csv(path)
    assert parsed.semicolon is False
    assert parsed.rows.get_column("serial").to_list() == ["A;1"]


def test_quoted_cells_may_hold_commas_and_quotes(tmp_path: Path) -> None:
    path = _write(tmp_path, b'product_code,serial\n11223344556675,"A,""1"\n')
    assert read_inbox_csv(path).rows.get_column("serial").to_list() == ['A,"1']


def test_a_file_that_is_not_utf8_is_rejected_whole(tmp_path: Path) -> None:
    path = _write(tmp_path, "cmo_id,cmo_name\nC1,Müller Pharma\n".encode("latin-1"))
    with pytest.raises(FileRejected, match="UTF-8"):
        read_inbox_csv(path)


def test_a_header_that_is_not_utf8_is_rejected_whole(tmp_path: Path) -> None:
    path = _write(tmp_path, "cmo_id,naïve\nC1,x\n".encode("latin-1"))
    with pytest.raises(FileRejected, match="UTF-8"):
        read_inbox_csv(path)


def test_an_empty_file_has_no_header_and_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileRejected, match="header"):
        read_inbox_csv(_write(tmp_path, b""))


def test_a_header_only_file_has_no_rows(tmp_path: Path) -> None:
    parsed = read_inbox_csv(_write(tmp_path, b"product_code,serial\n"))
    assert parsed.header == ["product_code", "serial"]
    assert parsed.rows.height == 0


def test_first_data_row_is_line_2_and_blank_lines_keep_the_numbering(tmp_path: Path) -> None:
    data = b"product_code,serial\n11223344556675,A1\n\n11223344556675,A2\n,\n11223344556675,A3\n"
    frame = read_inbox_csv(_write(tmp_path, data)).rows
    assert frame.get_column("serial").to_list() == ["A1", "A2", "A3"]
    assert frame.get_column("_line").to_list() == [2, 4, 6]


def test_crlf_line_ends_are_read_like_lf(tmp_path: Path) -> None:
    data = b"product_code,serial\r\n11223344556675,A1\r\n11223344556675,A2\r\n"
    parsed = read_inbox_csv(_write(tmp_path, data))
    assert parsed.header == ["product_code", "serial"]
    assert parsed.rows.get_column("serial").to_list() == ["A1", "A2"]


def test_a_duplicate_column_stays_visible_in_the_header(tmp_path: Path) -> None:
    parsed = read_inbox_csv(_write(tmp_path, b"serial,Serial\nA,B\n"))
    assert parsed.header == ["serial", "serial"]


def test_a_row_with_more_cells_than_the_header_is_a_rejected_row(tmp_path: Path) -> None:
    """Each row on its own (§3.1): the row with an unquoted comma is rejected with its
    line; the rows around it (a blank line and a quoted line break too) are read."""
    data = b'cmo_id,cmo_name\nC1,Acme\n\nC2,Acme, Inc.\nC3,"Beta\nLabs"\nC4,Gamma,x,y\nC5,Delta\n'
    parsed = read_inbox_csv(_write(tmp_path, data, "cmos_a.csv"))
    assert parsed.rows.get_column("cmo_id").to_list() == ["C1", "C3", "C5"]
    assert parsed.rows.get_column("_line").to_list() == [2, 5, 8]
    got = parsed.rejects.select("line", "column", "value", "rule").rows()
    assert got == [(4, "cmo_name", " Inc.", "cell_count"), (7, "cmo_name", "x,y", "cell_count")]
    assert "3 cells but the header has 2 columns" in parsed.rejects.get_column("message")[0]
    assert 'quoted ("A,B")' in parsed.rejects.get_column("message")[0]


def test_a_semicolon_file_with_an_extra_cell_names_the_semicolon(tmp_path: Path) -> None:
    parsed = read_inbox_csv(_write(tmp_path, b"cmo_id;cmo_name\nC1;A;B\nC2;B\n", "cmos_a.csv"))
    assert parsed.rows.get_column("cmo_id").to_list() == ["C2"]
    assert 'semicolon must be quoted ("A;B")' in parsed.rejects.get_column("message")[0]


def test_an_empty_column_name_rejects_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileRejected, match="empty column name"):
        read_inbox_csv(_write(tmp_path, b"product_code,,serial\n1,2,3\n"))


def test_a_quoted_cell_over_two_lines_keeps_the_file_lines_of_later_rows(tmp_path: Path) -> None:
    """The reject line is the line where the row starts in the file, as a text editor shows it."""
    data = b'cmo_id,cmo_name\nC1,"two\nlines"\n\nC2,x\nC3,"a\r\nb\r\nc"\nC4,y\n'
    frame = read_inbox_csv(_write(tmp_path, data, "cmos_1.csv")).rows
    assert frame.get_column("cmo_id").to_list() == ["C1", "C2", "C3", "C4"]
    assert frame.get_column("_line").to_list() == [2, 5, 6, 9]
    assert frame.get_column("cmo_name").to_list()[0] == "two\nlines"


def test_carriage_return_only_line_ends_reject_the_file_with_the_fix(tmp_path: Path) -> None:
    path = _write(tmp_path, b"product_code,serial\r11223344556675,A\r")
    with pytest.raises(FileRejected, match="carriage return only"):
        read_inbox_csv(path)


def test_a_bare_quote_inside_an_unquoted_value_rejects_the_file_with_the_fix(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, b'product_code,serial\n11223344556675,A"C\n11223344556675,B\n')
    with pytest.raises(FileRejected, match='"A""B"'):
        read_inbox_csv(path)


# ------------------------------------------------------------ one pass: hash and plainness


@pytest.mark.parametrize(
    ("data", "plain"),
    [
        (b"product_code,serial\n11223344556675,A1\n", True),
        (b"\xef\xbb\xbfproduct_code,serial\n11223344556675,A1\n", True),  # BOM only
        (b"product_code,serial\r\n11223344556675,A1\r\n", True),  # CRLF line ends
        (b"product_code,serial\n11223344556675,A1 \n", False),  # a trailing space
        (b"product_code,serial\n11223344556675,\tA1\n", False),  # a tab
        (b"product_code,serial\n11223344556675,A\x0b1\n", False),  # a vertical tab
        (b'product_code,serial\n11223344556675,"A\n1"\n', False),  # a quoted line break
        (b"product_code,serial\n11223344556675,A1\r\r\n", False),  # a stray CR
        ("product_code,serial\n11223344556675,A1\u00a0\n".encode(), False),  # non-ASCII
    ],
)
def test_scan_file_hashes_and_tells_whether_a_file_is_plain(
    tmp_path: Path, data: bytes, plain: bool
) -> None:
    path = _write(tmp_path, data)
    scan = scan_file(path)
    assert scan.sha256 == hashlib.sha256(data).hexdigest()
    assert scan.plain is plain


@pytest.mark.parametrize(
    ("data", "gs1_text"),
    [
        (b"product_code,serial\n11223344556675,A1\n", True),
        (b"\xef\xbb\xbfproduct_code,serial\r\n11223344556675,a!%&'()*+-./:;<=>?_\r\n", True),
        (b"product_code,serial\n11223344556675,A#1\n", False),  # ASCII, not GS1
        (b"product_code,serial\n11223344556675,A~1\n", False),
        (b"product_code,serial\n11223344556675,A 1\n", False),  # a blank
        (b'product_code,serial\n11223344556675,"A1"\n', False),  # a quote: lines may break
        (b"product_code,serial\n11223344556675,A1\r\r\n", False),  # a stray CR
        ("product_code,serial\n11223344556675,Aé\n".encode(), False),
    ],
)
def test_scan_file_tells_whether_every_character_is_gs1(
    tmp_path: Path, data: bytes, gs1_text: bool
) -> None:
    scan = scan_file(_write(tmp_path, data))
    assert scan.gs1_text is gs1_text
    assert not scan.gs1_text or scan.plain


def test_scan_file_sees_a_crlf_split_between_two_reads(tmp_path: Path) -> None:
    data = b"a,b\r\n1,2\r\n"
    path = _write(tmp_path, data)
    # every split of the file into reads of 1..len bytes gives the same answer
    assert {scan_file(path, chunk_size=n).plain for n in range(1, len(data) + 1)} == {True}
    stray = _write(tmp_path, b"a,b\r\n1,2\r", "x.csv")
    assert {scan_file(stray, chunk_size=n).plain for n in range(1, 10)} == {False}


_CELL_BYTES = st.sampled_from(
    [b"a", b"Z", b"0", b"7", b"-", b".", b" ", b"\t", b"\x0b", b"\x0c", b"\r", b"\xc2\xa0", b"'"]
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.lists(_CELL_BYTES, max_size=6).map(b"".join),
            st.lists(_CELL_BYTES, max_size=6).map(b"".join),
        ),
        min_size=1,
        max_size=8,
    ),
    quote=st.booleans(),
    crlf=st.booleans(),
    bom=st.booleans(),
)
def test_skipping_the_blank_scan_of_a_plain_file_changes_nothing(
    tmp_path: Path,
    rows: list[tuple[bytes, bytes]],
    quote: bool,
    crlf: bool,
    bom: bool,
) -> None:
    end = b"\r\n" if crlf else b"\n"
    cell = (lambda c: b'"' + c + b'"') if quote else (lambda c: c)
    body = end.join(cell(a) + b"," + cell(b) for a, b in rows)
    data = (b"\xef\xbb\xbf" if bom else b"") + b"cmo_id,cmo_name" + end + body + end
    path = _write(tmp_path, data, "cmos_p.csv")
    try:
        full = read_inbox_csv(path)
    except FileRejected:
        return  # nothing to compare: the file is rejected whole either way
    fast = read_inbox_csv(path, plain=lambda: scan_file(path).plain)
    assert fast.rows.equals(full.rows)


_SERIAL_BYTES = st.sampled_from(
    [b"A", b"z", b"9", b"!", b"%", b"_", b"#", b"~", b"{", b" ", b'"', b"\n", b"\xc3\xa9", b"\r"]
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    serials=st.lists(st.lists(_SERIAL_BYTES, max_size=24).map(b"".join), min_size=1, max_size=6),
    quote=st.booleans(),
    crlf=st.booleans(),
)
def test_validating_a_gs1_text_file_by_serial_length_changes_nothing(
    tmp_path: Path, serials: list[bytes], quote: bool, crlf: bool
) -> None:
    """Knowing from the scan that a file is GS1 text, serials are checked by length
    only: the valid rows and the rejects are those of the full check, for any file."""
    end = b"\r\n" if crlf else b"\n"
    cell = (lambda c: b'"' + c.replace(b'"', b'""') + b'"') if quote else (lambda c: c)
    body = b"".join(b"11223344556675," + cell(s) + end for s in serials)
    path = _write(tmp_path, b"product_code,serial" + end + body)
    try:
        parsed = read_inbox_csv(path)
    except FileRejected:
        return  # rejected whole before any row is validated
    scan = scan_file(path)
    full = validate_rows(SerialPoolFile, parsed.rows)
    fast = validate_rows(SerialPoolFile, parsed.rows, gs1_text=scan.gs1_text)
    assert fast[0].equals(full[0])
    assert fast[1].equals(full[1])
