"""`cmi.log` is stamped with the run's clock (SPEC §1: "`--as-of` fixes the run's clock for
everything — the business date for validity checks, the timestamps in file names, run
ids and the log"): every line of a run, its tracebacks included, carries the run's clock
— `--as-of`, else the run's start, the instant of its run id — as the contract log and
the export names do.  A command without a run's clock (status) keeps the machine's."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.pipeline_helpers import csv, drop

runner = CliRunner()
P1 = "11223344556675"
STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),\d{3} (INFO|WARNING|ERROR) ")


@pytest.fixture(autouse=True)
def own_log() -> Iterator[None]:
    """The `cmi` logger opens its file once per process: each test here gets its own."""
    logger = logging.getLogger("cmi")
    saved = logger.handlers[:]
    logger.handlers = []
    try:
        yield
    finally:
        for handler in logger.handlers:
            handler.close()
        logger.handlers = saved


def _inbox(root: Path) -> None:
    drop(
        root / "in",
        {
            "products_a.csv": csv("product_code,product_name", f"{P1},Demo"),
            "what_is_this.txt": "no kind\n",  # a quarantine: a WARNING line
        },
    )
    (root / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")


def _run(root: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["run", "--inbox", str(root / "in"), "--outbox", str(root / "out"),
         "--state", str(root / "st" / "cmi.duckdb"), "--config", str(root / "cmi.toml"),
         "--no-prefect", *extra],
    )  # fmt: skip
    return result.exit_code, result.output


def _stamps(log: Path) -> list[str]:
    """The timestamp of every line that starts a log record (not a traceback's lines)."""
    return [m[1] for line in log.read_text().splitlines() if (m := STAMP.match(line))]


def test_every_line_of_a_run_carries_its_as_of(tmp_path: Path) -> None:
    _inbox(tmp_path)
    code, output = _run(tmp_path, "--as-of", "2024-05-01T07:00:00")
    assert code == 0, output
    log = tmp_path / "st" / "cmi.log"
    stamps = _stamps(log)
    assert len(stamps) == 3, log.read_text()  # two files and the summary
    assert set(stamps) == {"2024-05-01 07:00:00"}
    assert all(line.startswith("2024-05-01 07:00:00,000 ") for line in log.read_text().splitlines())


def test_without_as_of_the_lines_carry_the_runs_start_not_an_earlier_runs_clock(
    tmp_path: Path,
) -> None:
    """The clock of one command never stamps the next (both run in this one process)."""
    _inbox(tmp_path)
    assert _run(tmp_path, "--as-of", "2024-05-01T07:00:00")[0] == 0
    drop(tmp_path / "in", {"products_b.csv": csv("product_code,product_name", f"{P1},Renamed")})
    code, output = _run(tmp_path)
    assert code == 0, output
    run_id = re.match(r"run (\d{8}T\d{6}):", output)
    assert run_id, output
    start = dt.datetime.strptime(run_id[1], "%Y%m%dT%H%M%S").strftime("%Y-%m-%d %H:%M:%S")
    stamps = _stamps(tmp_path / "st" / "cmi.log")
    assert stamps[:3] == ["2024-05-01 07:00:00"] * 3
    assert stamps[3:] == [start, start], stamps  # the new file and the summary


def test_a_traceback_of_a_run_goes_to_the_log_under_the_runs_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.pipeline

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a failure nobody expected")

    monkeypatch.setattr(flows.pipeline, "run_local", broken)
    _inbox(tmp_path)
    code, output = _run(tmp_path, "--as-of", "2024-05-01T07:00:00")
    assert code == 1 and "Traceback" not in output, output
    text = (tmp_path / "st" / "cmi.log").read_text()
    assert text.startswith("2024-05-01 07:00:00,000 ERROR cmi: unexpected error\nTraceback")
    assert "RuntimeError: a failure nobody expected" in text


def test_validate_stamps_its_log_with_its_as_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validate's log (in its report folder) holds only what went wrong: under its clock."""
    import flows.validate

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a failure nobody expected")

    monkeypatch.setattr(flows.validate, "validate_inbox", broken)
    _inbox(tmp_path)
    result = runner.invoke(
        app,
        ["validate", "--inbox", str(tmp_path / "in"), "--state", str(tmp_path / "st" / "x.duckdb"),
         "--config", str(tmp_path / "cmi.toml"), "--report", str(tmp_path / "rep"),
         "--as-of", "2024-05-01"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    text = (tmp_path / "rep" / "cmi.log").read_text()
    assert text.startswith("2024-05-01 00:00:00,000 ERROR cmi: unexpected error\nTraceback")
    assert not (tmp_path / "st").exists()  # validate leaves nothing beside the store


def test_a_command_without_a_runs_clock_keeps_the_machines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cmi status` right after a run with --as-of: its traceback carries the time it
    happened, not the earlier run's clock."""
    _inbox(tmp_path)
    assert _run(tmp_path, "--as-of", "2024-05-01T07:00:00")[0] == 0
    import flows.status

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a failure nobody expected")

    monkeypatch.setattr(flows.status, "balances", broken)
    before = dt.datetime.now().replace(microsecond=0)
    result = runner.invoke(app, ["status", "--state", str(tmp_path / "st" / "cmi.duckdb")])
    after = dt.datetime.now()
    assert result.exit_code == 1, result.output
    last = _stamps(tmp_path / "st" / "cmi.log")[-1]
    assert before <= dt.datetime.strptime(last, "%Y-%m-%d %H:%M:%S") <= after
