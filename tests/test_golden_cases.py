"""Golden cases through the real Prefect flow: tests/cases/<case>/inbox → expected/ (one harness).

`expected/<report>.csv` is compared with the run's report of that name;
`expected/outbox/<path>` with the outbox file at that path. `case.toml` gives
`as_of` and optional `[functions]` / `[serials]`.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from flows.pipeline import RunPaths
from tests.pipeline_helpers import drop

CASES = Path(__file__).parent / "cases"
CASE_DIRS = sorted(p for p in CASES.iterdir() if (p / "inbox").is_dir()) if CASES.is_dir() else []


def _case_config(case: Path, folder: Path) -> tuple[str, Path]:
    """The case's `as_of` and a cmi.toml with the rest of case.toml, files settled at once."""
    text = (case / "case.toml").read_text() if (case / "case.toml").exists() else ""
    as_of = str(tomllib.loads(text).get("as_of", "2026-11-23T02:00:00"))
    kept = [line for line in text.splitlines() if not line.startswith("as_of")]
    config = folder / "cmi.toml"
    config.write_text("\n".join(["[inbox]", "settle_seconds = 0", *kept]) + "\n")
    return as_of, config


@pytest.mark.parametrize("case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_golden_case(case: Path, tmp_path: Path, prefect_harness: None) -> None:
    from flows.nightly import nightly

    as_of, config = _case_config(case, tmp_path)
    files = {p.name: p.read_bytes() for p in sorted((case / "inbox").iterdir()) if p.is_file()}
    paths = RunPaths(tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state" / "cmi.duckdb")
    drop(paths.inbox, files)  # type: ignore[arg-type]
    paths.outbox.mkdir(parents=True)
    state = nightly(str(paths.inbox), str(paths.outbox), str(paths.state), str(config), as_of,
                    return_state=True)  # fmt: skip
    outline = state.result()
    assert state.is_completed(), state.message
    reports = paths.outbox / "reports" / outline["run_id"]
    expected = case / "expected"
    checked = 0
    for want in sorted(p for p in expected.rglob("*") if p.is_file()):
        rel = want.relative_to(expected)
        got = (
            paths.outbox / rel.relative_to("outbox") if rel.parts[0] == "outbox" else reports / rel
        )
        assert got.exists(), f"{case.name}: {rel} was not written"
        assert got.read_text(encoding="utf-8") == want.read_text(encoding="utf-8"), (
            f"{case.name}: {rel} differs"
        )
        checked += 1
    assert checked > 0
    shutil.rmtree(tmp_path / "state")


def test_the_flow_turns_prefects_usage_heartbeat_off() -> None:
    """Its SQLite write collided with the run's: a 'database is locked' traceback on every
    `cmi run --prefect`."""
    import os

    import flows.nightly  # noqa: F401 - sets the default at import

    assert os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED") == "false"
