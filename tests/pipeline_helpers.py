"""Helpers to run the real pipeline (without Prefect) on temporary folders."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

from flows.pipeline import RunPaths, run_local
from transforms.context import Config, InboxConfig

SETTLED = Config(inbox=InboxConfig(settle_seconds=0))


def paths_in(root: Path) -> RunPaths:
    return RunPaths(root / "inbox", root / "outbox", root / "state" / "cmi.duckdb")


def drop(inbox: Path, files: dict[str, str | bytes], age: float = 60) -> None:
    """Put files into the inbox as an operations team would, already settled."""
    inbox.mkdir(parents=True, exist_ok=True)
    past = time.time() - age
    for name, content in files.items():
        path = inbox / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        os.utime(path, (past, past))


def run_day(
    root: Path, as_of: str, files: dict[str, str | bytes] | None = None, config: Config = SETTLED
) -> dict[str, Any]:
    paths = paths_in(root)
    if files:
        drop(paths.inbox, files)
    paths.inbox.mkdir(parents=True, exist_ok=True)
    paths.outbox.mkdir(parents=True, exist_ok=True)
    return run_local(paths, config, dt.datetime.fromisoformat(as_of))


def report(root: Path, run_id: str, name: str) -> str:
    return (root / "outbox" / "reports" / run_id / name).read_text(encoding="utf-8")


def summary(root: Path, run_id: str) -> dict[str, Any]:
    return json.loads(report(root, run_id, "run_summary.json"))


def csv(header: str, *rows: str) -> str:
    return header + "\n" + "".join(r + "\n" for r in rows)
