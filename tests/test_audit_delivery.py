"""Delivery configuration and delivery checked against the letter of SPEC §2 and §8.1
through the command line: cases a black-box audit found the product getting wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CMI = [sys.executable, "-m", "flows.cli"]


@pytest.mark.parametrize("url", ["5", "true", '["file:///tmp"]', '{ path = "/tmp" }'])
def test_a_delivery_url_that_is_no_text_is_a_configuration_error_naming_it(
    tmp_path: Path, url: str
) -> None:
    """§2: 'a value of the wrong type is a configuration error (exit 2) that names it' —
    `url` too (it was exit 1, 'unexpected error: AttributeError' or 'TypeError')."""
    (tmp_path / "inbox").mkdir()
    config = tmp_path / "cmi.toml"
    config.write_text(f"[delivery.ACME]\nurl = {url}\n", encoding="utf-8")
    done = subprocess.run(
        [*CMI, "run", "--inbox", str(tmp_path / "inbox"), "--outbox", str(tmp_path / "out"),
         "--state", str(tmp_path / "state" / "cmi.duckdb"), "--config", str(config),
         "--as-of", "2026-12-02"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    message = done.stderr.strip()
    assert "[delivery.ACME] url must be a text in quotes" in message, message
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "out" / "reports").exists()
