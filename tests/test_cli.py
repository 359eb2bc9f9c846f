"""The `cmi` command line: paths, environment defaults, exit codes and messages (§1, §2)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from connectors.store import open_store
from flows.cli import app
from tests.pipeline_helpers import csv, drop
from transforms.reports import SERIAL_BALANCE_COLUMNS

runner = CliRunner()


def args(root: Path, *extra: str, make_inbox: bool = True) -> list[str]:
    if make_inbox and not (root / "in").exists():
        (root / "in").mkdir(parents=True)
    return ["run", "--inbox", str(root / "in"), "--outbox", str(root / "out"),
            "--state", str(root / "st" / "cmi.duckdb"), *extra]  # fmt: skip


def test_run_exits_0_and_prints_a_summary(tmp_path: Path) -> None:
    drop(
        tmp_path / "in", {"products_a.csv": csv("product_code,product_name", "11223344556675,Demo")}
    )
    (tmp_path / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")
    result = runner.invoke(
        app, args(tmp_path, "--as-of", "2026-11-23", "--config", str(tmp_path / "cmi.toml"))
    )
    assert result.exit_code == 0, result.output
    assert "run 20261123T000000" in result.output
    assert (tmp_path / "out" / "reports" / "20261123T000000" / "run_summary.json").exists()


def test_an_empty_night_says_so_in_its_summary(tmp_path: Path) -> None:
    """§1: the short summary of a run over an empty inbox says what it saw (as validate's
    does), not a dangling dash."""
    result = runner.invoke(app, args(tmp_path, "--as-of", "2026-11-23"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "run 20261123T000000: 0 file(s) — an empty inbox"


@pytest.mark.parametrize("which", ["in", "out"])
def test_an_inbox_or_outbox_that_is_a_file_is_exit_2(tmp_path: Path, which: str) -> None:
    (tmp_path / which).write_text("not a folder")
    result = runner.invoke(app, args(tmp_path))
    assert result.exit_code == 2, result.output
    assert "is a file, not a folder" in result.output and "Traceback" not in result.output


def test_a_missing_inbox_is_exit_2_naming_it_and_creates_nothing(tmp_path: Path) -> None:
    """A run started in the wrong place must not pass for an empty night (§1)."""
    result = runner.invoke(app, args(tmp_path, make_inbox=False))
    assert result.exit_code == 2, result.output
    assert f"inbox {tmp_path / 'in'} does not exist" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "in").exists() and not (tmp_path / "out").exists()


def test_the_runs_warnings_are_printed_after_the_summary(tmp_path: Path) -> None:
    drop(
        tmp_path / "in",
        {"products_a.csv": "product_code;product_name\n11223344556675;Demo\n"},
    )
    (tmp_path / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")
    result = runner.invoke(
        app, args(tmp_path, "--as-of", "2026-11-23", "--config", str(tmp_path / "cmi.toml"))
    )
    assert result.exit_code == 0, result.output
    summary, warnings = result.output.split("1 warning(s):\n")
    assert "reports: " in summary
    assert warnings.startswith("  - products_a.csv: the header is separated by semicolons")


def test_version_prints_cmi_and_the_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"cmi {version('cmi')}\n"


@pytest.mark.parametrize("command", ["run", "demo", "serve", "status", "validate", "redeliver"])
def test_help_shows_every_options_default_and_environment_variable(command: str) -> None:
    """§1: `--help` of every command shows each option's default and, where it has one,
    its environment variable (rich markup used to swallow `[env …]`)."""
    import re

    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    sub = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    lines = result.output.splitlines()
    options = [p for p in sub.params if p.param_type_name == "option" and p.name != "help"]
    assert options
    for param in options:
        line = next(line for line in lines if line.strip().startswith(param.opts[0]))
        assert re.search(r"\[(env var: CMI_[A-Z]+; )?default: [^]]+\]", line), line
        env = {"inbox": "CMI_INBOX", "outbox": "CMI_OUTBOX", "state": "CMI_STATE",
               "config": "CMI_CONFIG"}.get(param.name or "")  # fmt: skip
        if env:
            assert f"env var: {env}" in line, line
    assert "<bool>" not in result.output


def test_missing_config_file_named_by_flag_is_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, args(tmp_path, "--config", str(tmp_path / "nope.toml")))
    assert result.exit_code == 2
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_unknown_config_key_is_exit_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "cmi.toml").write_text("[functions]\ncmi_multi = true\n")
    result = runner.invoke(app, args(tmp_path, "--config", str(tmp_path / "cmi.toml")))
    assert result.exit_code == 2 and "cmi_multi" in result.output


def test_config_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.toml").write_text("[serials]\ngenerated_length = 'twelve'\n")
    monkeypatch.setenv("CMI_CONFIG", str(tmp_path / "bad.toml"))
    result = runner.invoke(app, args(tmp_path))
    assert result.exit_code == 2 and "generated_length" in result.output


def test_paths_from_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "envin").mkdir()
    monkeypatch.setenv("CMI_INBOX", str(tmp_path / "envin"))
    monkeypatch.setenv("CMI_OUTBOX", str(tmp_path / "envout"))
    monkeypatch.setenv("CMI_STATE", str(tmp_path / "envstate" / "s.duckdb"))
    result = runner.invoke(app, ["run", "--as-of", "2026-11-23T01:02:03"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "envout" / "reports" / "20261123T010203").is_dir()
    assert (tmp_path / "envstate" / "s.duckdb").exists()


@pytest.mark.parametrize(
    "when",
    ["23/11/2026", "2026-1-5", "2026-11-5", "2026-11-23T2:3:4", "2026-11-23T02:00",
     "2026-11-23 02:00:00", "2026-11-23T02:00:00Z", "2026-02-30"],
)  # fmt: skip
def test_bad_as_of_is_exit_2(tmp_path: Path, when: str) -> None:
    """§1: `--as-of` takes YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, nothing looser."""
    result = runner.invoke(app, args(tmp_path, "--as-of", when))
    assert result.exit_code == 2 and "--as-of" in result.output, result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("when", "run_id"),
    [("2026-11-23", "20261123T000000"), ("2026-11-23T01:02:03", "20261123T010203")],
)
def test_as_of_takes_a_date_or_a_date_time(tmp_path: Path, when: str, run_id: str) -> None:
    result = runner.invoke(app, args(tmp_path, "--as-of", when))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "reports" / run_id).is_dir()


def test_locked_state_store_is_exit_3(tmp_path: Path) -> None:
    store = open_store(tmp_path / "st" / "cmi.duckdb")
    try:
        result = runner.invoke(app, args(tmp_path))
    finally:
        store.close()
    assert result.exit_code == 3 and "lock" in result.output


def test_a_state_store_of_an_earlier_format_is_exit_2(tmp_path: Path) -> None:
    """A state file whose serials were one table row each is refused with a clear message."""
    old = tmp_path / "st" / "cmi.duckdb"
    old.parent.mkdir(parents=True)
    con = duckdb.connect(str(old))
    con.execute("CREATE TABLE serials (sid BIGINT, product_code VARCHAR, serial VARCHAR)")
    con.close()
    result = runner.invoke(app, args(tmp_path))
    assert result.exit_code == 2 and "earlier version" in result.output
    status = runner.invoke(app, ["status", "--state", str(old)])
    assert status.exit_code == 2 and "earlier version" in status.output


@pytest.mark.parametrize("command", ["run", "status", "validate", "redeliver"])
def test_a_state_file_that_is_no_duckdb_store_is_exit_2_and_left_as_it_is(
    tmp_path: Path, command: str
) -> None:
    """§1: `--state` naming a file that is not a state store (a typo, the wrong file) is a
    usage error, exit 2, saying so in a line; the file is not touched."""
    state = tmp_path / "st" / "cmi.duckdb"
    state.parent.mkdir(parents=True)
    state.write_text("product_code,serial\n")
    extra = {"run": args(tmp_path)[1:], "validate": ["--inbox", str(tmp_path / "in"),
             "--report", str(tmp_path / "rep")], "redeliver": ["--outbox", str(tmp_path / "out"),
             "a.csv"], "status": []}[command]  # fmt: skip
    (tmp_path / "in").mkdir(exist_ok=True)
    result = runner.invoke(app, [command, *extra, "--state", str(state)])
    assert result.exit_code == 2, result.output
    assert f"{state} is not a cmi state store" in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) <= 2
    assert state.read_text() == "product_code,serial\n"


def test_status_prints_the_serial_balance(tmp_path: Path) -> None:
    """Into a pipe or a file: each balance as CSV under a `# <report name>` line, nothing cut."""
    code = "11223344556675"
    drop(
        tmp_path / "in",
        {
            "products_a.csv": csv("product_code,product_name", f"{code},Demo"),
            "cmos_a.csv": csv(
                "cmo_id,cmo_name,city,country,produceable_products",
                f"A-LONG-CMO-IDENTIFIER-01,Acme Pharma International,Mannheim,DE,{code}",
            ),
        },
    )
    (tmp_path / "cmi.toml").write_text("[inbox]\nsettle_seconds = 0\n")
    ran = runner.invoke(
        app, args(tmp_path, "--as-of", "2026-11-23", "--config", str(tmp_path / "cmi.toml"))
    )
    assert ran.exit_code == 0, ran.output
    result = runner.invoke(app, ["status", "--state", str(tmp_path / "st" / "cmi.duckdb")])
    assert result.exit_code == 0
    serial, contract = result.output.split("# contract_balance\n")
    title, header, *rows = serial.splitlines()
    assert title == "# serial_balance"
    assert header.split(",") == SERIAL_BALANCE_COLUMNS
    assert rows and all(len(r.split(",")) >= len(SERIAL_BALANCE_COLUMNS) for r in rows)
    assert "…" not in result.output
    assert rows[0].startswith(f"A-LONG-CMO-IDENTIFIER-01,Acme Pharma International,{code},Demo,")
    assert contract.splitlines()[0].startswith("contract_id,line_no,")


def test_status_without_a_store_is_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--state", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 2


def test_demo_runs_a_sample_day(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    exports = list((tmp_path / "demo" / "outbox" / "serials").rglob("*.csv"))
    assert any(p.name.endswith("_CanContainDuplicateSerials.csv") for p in exports)
    rejects = (
        tmp_path / "demo" / "outbox" / "reports" / "20261123T020000" / "rejects.csv"
    ).read_text()
    assert rejects.count("\n") > 5


def test_demo_ignores_a_cmi_toml_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample day is the same everywhere: a cmi.toml that would hold every file back
    (or a broken one) does not change it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cmi.toml").write_text("[inbox]\nsettle_seconds = 100000\n")
    result = runner.invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "demo" / "inbox").glob("*.csv"))  # nothing left waiting
    monkeypatch.setenv("CMI_CONFIG", str(tmp_path / "missing.toml"))
    assert runner.invoke(app, ["demo", "--dir", str(tmp_path / "demo")]).exit_code == 0


def test_demo_twice_starts_from_a_fresh_day(tmp_path: Path) -> None:
    runner.invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
    result = runner.invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "duplicate" not in result.output


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me")
    result = runner.invoke(app, ["demo", "--dir", str(tmp_path / "mine")])
    assert result.exit_code == 2 and (tmp_path / "mine" / "precious.txt").exists()


def test_unexpected_failure_is_exit_1_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "reports").write_text("a file where the reports folder should be")
    result = runner.invoke(app, args(tmp_path, "--as-of", "2026-11-23"))
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "cmi.log" in result.output


def test_serve_rejects_a_bad_cron_expression(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["serve", "--cron", "every night", "--state", str(tmp_path / "s.duckdb")]
    )
    assert result.exit_code == 2 and "cron" in result.output


def test_serve_with_a_missing_inbox_is_exit_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§1: a missing inbox is a usage error that names the folder — for `serve` at once,
    not every night at 02:00 (checked before the Prefect server is looked for)."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = runner.invoke(
        app, ["serve", "--inbox", str(tmp_path / "in"), "--state", str(tmp_path / "s.duckdb")]
    )
    assert result.exit_code == 2, result.output
    assert f"inbox {tmp_path / 'in'} does not exist" in result.output
    assert not (tmp_path / "in").exists()


@pytest.mark.parametrize("spelling", ["folder_link", "file_link", "dotted"])
def test_a_store_locked_under_another_path_is_exit_3(tmp_path: Path, spelling: str) -> None:
    """The lock is taken on the store's resolved path (§8): a symlinked --state, a symlink
    to the store file or another spelling of the same path is the same store."""
    real = tmp_path / "st" / "cmi.duckdb"
    store = open_store(real)
    if spelling == "folder_link":
        (tmp_path / "link").symlink_to(tmp_path / "st", target_is_directory=True)
        other = tmp_path / "link" / "cmi.duckdb"
    elif spelling == "file_link":
        (tmp_path / "elsewhere").mkdir()
        other = tmp_path / "elsewhere" / "store.duckdb"
        other.symlink_to(real)
    else:
        other = tmp_path / "st" / ".." / "st" / "." / "cmi.duckdb"
    try:
        result = runner.invoke(app, [*args(tmp_path)[:5], "--state", str(other)])
    finally:
        store.close()
    assert result.exit_code == 3, result.output
    assert "another run holds the lock" in result.output and "Traceback" not in result.output


def test_a_store_held_by_duckdb_without_our_lock_is_exit_3(tmp_path: Path) -> None:
    """DuckDB's own file lock (a duckdb shell, an older cmi) is a busy store too: exit 3."""
    import subprocess
    import sys

    real = tmp_path / "st" / "cmi.duckdb"
    real.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('open', flush=True); time.sleep(120)", str(real)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        result = runner.invoke(app, args(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 3, result.output
