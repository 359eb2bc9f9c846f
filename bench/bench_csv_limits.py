"""Benchmark: bounded input for CSV files (SPEC §8, issue 18 item 3).

Memory — each case read by `read_inbox_csv` in a fresh child process, so that its
peak RSS (`ru_maxrss`, from `os.wait4`) belongs to that file alone:

- `baseline`: a two-line products file (the interpreter, polars and the reader loaded);
- `line`: a serial pool file whose second line is `--mb` MB of real bytes;
- `cell`: a products file whose second row holds a quoted value of `--mb` MB made of
  1 KiB lines (one row: the line breaks are inside quotes);
- `sparse`: a 2 GiB sparse serial pool file (over the 1 GB file limit).

Each must be quarantined (`FileRejected`) with a peak far below 2 GB: the limits are
checked while streaming, before a parser holds the file.

Speed — `check_limits` (the streaming pass every inbox CSV gets before it is parsed)
on a products file of `--mb` MB (about 8M rows at 512), once plain and once with every cell quoted (the
slower path: rows are found by the parity of the quotes), each against a bare pass
that reads the same file in the same 1 MiB chunks and counts its line ends; bare and
checked alternate, ratios of medians.

    python -m bench.bench_csv_limits            # 512 MB cases
    python -m bench.bench_csv_limits --mb 64    # small, quick

The last line is one JSON object: peaks in MB, the ratios, the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from connectors.csv_limits import check_limits

P = "11223344556675"
MB = 1 << 20
_CHILD = """
import sys
from pathlib import Path
from connectors.csv_reader import FileRejected, read_inbox_csv
try:
    read_inbox_csv(Path(sys.argv[1]))
    print("read")
except FileRejected as err:
    print("quarantined:", str(err)[:160])
"""


def _write(path: Path, head: bytes, body: bytes, times: int, tail: bytes = b"") -> Path:
    with path.open("wb") as fh:
        fh.write(head)
        for _ in range(times):
            fh.write(body)
        fh.write(tail)
    return path


def make_files(folder: Path, mb: int) -> dict[str, Path]:
    # rows of 66 bytes (70 quoted): 512 MB stay under the 10M-row limit
    rows = "".join(f"{P},Product name {i:037d}\n" for i in range(MB // 66)).encode()
    quoted = "".join(f'"{P}","Product name {i:037d}"\n' for i in range(MB // 70)).encode()
    sparse = folder / "serial_pool_sparse.csv"
    sparse.write_bytes(f"product_code,serial\n{P},A1\n".encode())
    os.truncate(sparse, 2 << 30)
    return {
        "baseline": _write(folder / "products_base.csv", b"product_code,product_name\n",
                           f"{P},A\n".encode(), 1),
        "line": _write(folder / "serial_pool_line.csv", f"product_code,serial\n{P},".encode(),
                       b"S" * MB, mb, b"\n"),
        "cell": _write(folder / "products_cell.csv", f'product_code,product_name\n{P},"'.encode(),
                       (b"x" * 1023 + b"\n") * 1024, mb, b'"\n'),
        "sparse": sparse,
        "plain": _write(folder / "products_plain.csv", b"product_code,product_name\n", rows,
                        mb),
        "quoted": _write(folder / "products_quoted.csv", b'"product_code","product_name"\n',
                         quoted, mb),
    }  # fmt: skip


def peak_mb(path: Path) -> tuple[float, str]:
    """The peak RSS (MB) of a child that reads `path`, and what it said."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    said = child.stdout.read().strip()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"the child reading {path.name} failed ({child.returncode})")
    return usage.ru_maxrss / 1024, said


def bare_pass(path: Path) -> int:
    ends = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(MB), b""):
            ends += chunk.count(b"\n")
    return ends


def timed(fn: object, path: Path) -> float:
    started = time.perf_counter()
    fn(path)  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="size of the large cases (MB)")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    result: dict[str, object] = {"bench": "csv_limits", "mb": args.mb}
    with tempfile.TemporaryDirectory(prefix="bench_csv_limits_") as tmp:
        files = make_files(Path(tmp), args.mb)
        for case in ("baseline", "line", "cell", "sparse"):
            peak, said = peak_mb(files[case])
            print(f"{case:9s} peak {peak:8.1f} MB  {said}", flush=True)
            if case != "baseline" and not said.startswith("quarantined"):
                raise SystemExit(f"{case}: expected a quarantine, got: {said}")
            result[f"{case}_peak_mb"] = round(peak, 1)
        for case in ("plain", "quoted"):
            bare: list[float] = []
            checked: list[float] = []
            for _ in range(args.reps):
                bare.append(timed(bare_pass, files[case]))
                checked.append(timed(check_limits, files[case]))
            b, c = statistics.median(bare), statistics.median(checked)
            print(f"{case:9s} check_limits {c:.3f} s, bare pass {b:.3f} s, ratio {c / b:.2f}")
            result[f"{case}_s"] = round(c, 3)
            result[f"{case}_bare_s"] = round(b, 3)
            result[f"{case}_ratio"] = round(c / b, 2)
    result["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
