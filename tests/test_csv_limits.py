"""Bounded input for CSV files and messages a person can act on (SPEC §3.1, §8; issue 18
items 3 and 7, issue 16's tab-separated and unclosed-quote files).

The limits are checked while streaming, before any of the file is held: a line over
1 MiB, a header over 1,000 columns, a file that is not text (NUL bytes, UTF-16 with or
without a byte-order mark), more than 10M rows or more than 1 GB quarantine the file
with a reason that names the line and the limit."""

from __future__ import annotations

import csv as csvlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.csv_limits import LimitExceeded, _check
from connectors.csv_reader import FileRejected, read_inbox_csv
from tests.pipeline_helpers import csv, drop, run_day, summary

P = "11223344556675"
ROOT = Path(__file__).resolve().parents[1]
GB = 1024**3


def _write(tmp_path: Path, data: bytes, name: str = "serial_pool_1.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _reason(path: Path) -> str:
    with pytest.raises(FileRejected) as caught:
        read_inbox_csv(path)
    reason = str(caught.value)
    assert "\x00" not in reason and len(reason) < 400, reason
    return reason


# ------------------------------------------------------------------ lines and files


def test_a_line_over_1_mib_names_the_line_and_the_limit(tmp_path: Path) -> None:
    data = f"product_code,serial\n{P},A1\n{P},".encode() + b"S" * (1 << 21) + b"\n"
    reason = _reason(_write(tmp_path, data))
    assert reason.startswith("line 3 is longer than the limit of 1 MiB (1,048,576 bytes)")


def test_a_long_line_of_a_file_with_windows_line_ends_is_not_called_an_old_mac_file(
    tmp_path: Path,
) -> None:
    data = f"product_code,serial\r\n{P},A1\r\n{P},".encode() + b"S" * (3 << 19) + b"\r\n"
    reason = _reason(_write(tmp_path, data))
    assert reason.startswith("line 3 is longer than the limit of 1 MiB"), reason
    assert "carriage return only" not in reason and "a CSV line holds one row" in reason


def test_a_long_file_with_old_mac_line_ends_says_so(tmp_path: Path) -> None:
    data = b"product_code,serial\r" + f"{P},S1\r".encode() * 100_000
    assert "carriage return only" in _reason(_write(tmp_path, data))


def test_a_line_of_exactly_1_mib_is_read(tmp_path: Path) -> None:
    cell = "S" * ((1 << 20) - len(P) - 1)
    parsed = read_inbox_csv(_write(tmp_path, f"product_code,serial\r\n{P},{cell}\r\n".encode()))
    assert parsed.rows.height == 1


def test_a_2_mb_column_name_is_a_header_over_the_line_limit(tmp_path: Path) -> None:
    data = b"product_code," + b"x" * 2_000_000 + b"\n"
    reason = _reason(_write(tmp_path, data))
    assert reason.startswith("the header (line 1) is longer than the limit of 1 MiB"), reason


def test_a_header_over_1000_columns_names_the_count_and_the_limit(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(1001))
    reason = _reason(_write(tmp_path, (header + "\n").encode()))
    assert "the header (line 1) has 1,001 columns, over the limit of 1,000" in reason
    assert "extra_columns" not in reason  # not polars' advice


def test_a_one_million_column_header_is_over_the_line_limit(tmp_path: Path) -> None:
    reason = _reason(_write(tmp_path, b",".join([b"c"] * 1_000_000) + b"\n"))
    assert "the header (line 1) is longer than the limit of 1 MiB" in reason


def test_a_very_long_column_name_is_shown_cut(tmp_path: Path) -> None:
    reason = _reason(_write(tmp_path, b"product_code," + b"y" * 300 + b"\n"))
    assert "column 2 of the header (line 1) is named by 300 characters" in reason
    assert "y" * 41 not in reason


def test_a_file_over_1_gb_is_quarantined_before_it_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path, f"product_code,serial\n{P},A1\n".encode())
    os.truncate(path, 2 * GB)  # sparse
    reason = _reason(path)
    assert "2,147,483,648 bytes, over the limit of 1 GB" in reason and "split it" in reason


def test_a_file_over_10_million_rows_is_quarantined_with_the_advice_to_split_it(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, b"product_code\n" + b"1\n" * 10_000_001)
    reason = _reason(path)
    assert "more than 10,000,000 rows" in reason and "split it" in reason


def test_a_quoted_value_whose_line_breaks_run_over_1_mib_is_a_row_over_the_limit(
    tmp_path: Path,
) -> None:
    """Issue 18 item 3: a cell of short lines inside quotes is one row; 2 MiB of it is
    over the row limit and quarantined before a parser holds it (it was read whole, 6.4
    times its size in memory), the line where the quote opened in the reason."""
    name = (b"x" * 1023 + b"\n") * 2048
    data = f'product_code,product_name\n{P},A\n{P},"'.encode() + name + b'"\n'
    reason = _reason(_write(tmp_path, data, "products_a.csv"))
    assert reason.startswith(
        "a double quote opened on line 3 is not closed within the limit of 1 MiB "
        "(1,048,576 bytes) for one row: the row runs on to line 2,050"
    ), reason
    assert '"A""B"' in reason


def test_an_unclosed_quote_in_a_large_file_names_its_line_and_the_limit(tmp_path: Path) -> None:
    rows = b"".join(f"{P},S{i}\n".encode() for i in range(100_000))
    data = f'product_code,serial\n{P},A1\n{P},"A2\n'.encode() + rows
    reason = _reason(_write(tmp_path, data))
    assert reason.startswith("a double quote opened on line 3 is not closed within the limit")


def test_quoted_line_breaks_under_the_limit_are_read_with_their_lines(tmp_path: Path) -> None:
    name = "n\r\n" * ((1 << 20) // 3 - 10)
    data = f'product_code,product_name\r\n{P},"{name}"\r\n{P},B\r\n'.encode()
    parsed = read_inbox_csv(_write(tmp_path, data, "products_a.csv"))
    assert parsed.rows.get_column("_line").to_list() == [2, 2 + name.count("\n") + 1]


_CELL = st.text(alphabet='ab,"\n\r ', max_size=30)


@settings(max_examples=300)
@given(
    rows=st.lists(st.lists(_CELL, min_size=1, max_size=4), min_size=1, max_size=12),
    crlf=st.booleans(),
    chunk=st.integers(min_value=1, max_value=40),
)
def test_the_row_limit_holds_whatever_the_quotes_and_the_reads(
    tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]], crlf: bool, chunk: int
) -> None:
    """Rows written by Python's csv module (quotes doubled, line breaks inside quotes): a
    row longer than the limit is found, on the line it starts, however the reads cut the
    file; no shorter row is."""
    limit = 40
    end = "\r\n" if crlf else "\n"
    texts = []
    for cells in rows:
        out = io.StringIO()
        csvlib.writer(out, lineterminator=end).writerow(cells)
        texts.append(out.getvalue().encode())
    path = tmp_path_factory.mktemp("rows") / "serial_pool_1.csv"
    path.write_bytes(b"".join(texts))
    starts = [1 + sum(t.count(b"\n") for t in texts[:i]) for i in range(len(texts))]
    over = [s for t, s in zip(texts, starts, strict=True) if len(t) - len(end) > limit]
    if not over:
        _check(path, limit, chunk)
        return
    with pytest.raises(LimitExceeded) as caught:
        _check(path, limit, chunk)
    reason = str(caught.value)
    line = "the header (line 1)" if over[0] == 1 else f"line {over[0]:,} "
    assert f"opened on line {over[0]:,} " in reason or reason.startswith(line), reason


# ------------------------------------------------------------------ not text


def test_utf16_without_a_byte_order_mark_says_so_without_raw_nuls(tmp_path: Path) -> None:
    data = "product_code,serial\n11223344556675,A1\n".encode("utf-16-le")
    reason = _reason(_write(tmp_path, data))
    assert "UTF-16LE without a byte-order mark" in reason and "save it as UTF-8" in reason
    assert "p r o d" not in reason


def test_utf16_with_a_byte_order_mark_says_so(tmp_path: Path) -> None:
    data = "product_code,serial\n11223344556675,A1\n".encode("utf-16")
    assert "UTF-16 byte-order mark" in _reason(_write(tmp_path, data))


def test_a_nul_byte_names_its_line(tmp_path: Path) -> None:
    data = f"product_code,serial\n{P},A1\n{P},A\x002\n".encode()
    reason = _reason(_write(tmp_path, data))
    assert reason.startswith("the file is not text: line 3 holds a NUL byte"), reason


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    data = "cmo_id,cmo_name\nC1,Acme\nC2,Müller Pharma\n".encode("latin-1")
    reason = _reason(_write(tmp_path, data, "cmos_a.csv"))
    assert "line 3 holds the byte 0xFC" in reason and "UTF-8" in reason


# ------------------------------------------------------------------ separators and quotes


def test_a_tab_separated_file_says_so(tmp_path: Path) -> None:
    data = b"cmo_id\tproduct_code\tquantity\nACME\t11223344556675\t5\n"
    reason = _reason(_write(tmp_path, data, "assignments_a.csv"))
    assert "tab-separated" in reason and "line 1" in reason and "comma" in reason
    assert "\t" not in reason


def test_an_unclosed_quote_says_so_and_gives_its_line(tmp_path: Path) -> None:
    data = f'product_code,serial\n{P},A1\n{P},"A2\n{P},A3\n{P},A4\n'.encode()
    reason = _reason(_write(tmp_path, data))
    assert reason.startswith("a double quote opened on line 3 is never closed"), reason


def test_an_unbalanced_quote_gives_its_line(tmp_path: Path) -> None:
    data = f'product_code,serial\n{P},A1\n{P},"A2"x\n'.encode()
    reason = _reason(_write(tmp_path, data))
    assert reason.startswith("line 3: a quoted value goes on after its closing quote"), reason


def test_a_bare_quote_gives_its_line_and_value(tmp_path: Path) -> None:
    data = f'product_code,serial\n{P},"A,""1"\n{P},A1\n{P},5"B\n'.encode()
    reason = _reason(_write(tmp_path, data))
    assert reason.startswith("line 4: the value '5\"B' holds a double quote"), reason
    assert '"A""B"' in reason


# ------------------------------------------------------------------ in a run


def test_a_file_over_a_limit_is_quarantined_and_the_night_goes_on(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "products_a.csv": csv("product_code,product_name", f"{P},Demo"),
        "assignments_tabs.csv": b"cmo_id\tproduct_code\tquantity\nACME\t11223344556675\t5\n",
        "serial_pool_utf16.csv": f"product_code,serial\n{P},A1\n".encode("utf-16-le"),
    }
    out = run_day(tmp_path, "2026-11-23T02:00:00", files)
    s = summary(tmp_path, out["run_id"])
    outcome = {f["name"]: (f["outcome"], f["reason"] or "") for f in s["files"]}
    assert outcome["products_a.csv"][0] == "applied"
    assert outcome["assignments_tabs.csv"][0] == "quarantined"
    assert "tab-separated" in outcome["assignments_tabs.csv"][1]
    assert "UTF-16LE" in outcome["serial_pool_utf16.csv"][1]
    q = tmp_path / "inbox" / "quarantine" / out["run_id"]
    assert "tab-separated" in (q / "assignments_tabs.csv.reason.txt").read_text()


_MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(done.returncode, peak)
sys.stderr.write(done.stderr)
"""


@pytest.mark.timeout(300)
def test_a_2_gib_file_and_a_512_mb_line_stay_under_2_gb_night_after_night(
    tmp_path: Path,
) -> None:
    """Issue 18 item 3: a 2 GiB sparse serial pool file and a serial pool file whose
    second line is 512 MB long (its first 4 MiB written, the rest sparse) are quarantined,
    the other files applied, run_summary.json written; the child's peak memory
    (getrusage) stays under 2 GB; the next night with the same files again does too."""
    inbox = tmp_path / "inbox"
    big = f"product_code,serial\n{P},A1\n".encode()
    line = f"product_code,serial\n{P},".encode() + b"S" * (4 << 20)
    for night in (1, 2):
        drop(inbox, {"products_a.csv": csv("product_code,product_name", f"{P},Demo"),
                     "serial_pool_2gib.csv": big, "serial_pool_line.csv": line})  # fmt: skip
        os.truncate(inbox / "serial_pool_2gib.csv", 2 * GB)
        os.truncate(inbox / "serial_pool_line.csv", 512 * 1024**2)
        (tmp_path / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")
        cmd = [sys.executable, "-m", "flows.cli", "run", "--inbox", str(inbox), "--outbox",
               str(tmp_path / "outbox"), "--state", str(tmp_path / "state" / "cmi.duckdb"),
               "--config", str(tmp_path / "cmi.toml"), "--as-of", f"2026-11-2{night}",
               "--no-prefect"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        measured = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], env=env,
                                  capture_output=True, text=True, timeout=280)  # fmt: skip
        code, peak = (int(x) for x in measured.stdout.split())
        assert code == 0, measured.stderr
        assert peak < 2 * 10**9, f"night {night}: peak {peak / 1e9:.2f} GB"
        run_id = f"2026112{night}T000000"
        s = json.loads((tmp_path / "outbox" / "reports" / run_id / "run_summary.json").read_text())
        outcome = {f["name"]: (f["outcome"], f["reason"] or "") for f in s["files"]}
        assert outcome["serial_pool_2gib.csv"][0] == "quarantined"
        assert "over the limit of 1 GB" in outcome["serial_pool_2gib.csv"][1]
        assert outcome["serial_pool_line.csv"][0] == "quarantined"
        assert "line 2 is longer than the limit of 1 MiB" in outcome["serial_pool_line.csv"][1]
        assert outcome["products_a.csv"][0] == ("applied" if night == 1 else "duplicate")
