"""Small file systems for fault tests: a tmpfs of a given size mounted on a test's folder
(the tests run as root, as CI does), to fill a disk or make a folder read-only for real."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """`folder` on a tmpfs of `size` (e.g. "2m") for the duration; unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def remount(folder: Path, options: str) -> None:
    """Change a mounted tmpfs: "size=64m" frees space, "ro" / "rw" make it read-only or not."""
    _mount("-o", f"remount,{options}", str(folder))
