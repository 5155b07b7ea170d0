"""Run directories: every run writes into its own ``<project>/<task>/<name>/``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def make_run_dir(project: str | os.PathLike, task: str, name: str, exist_ok: bool = False) -> Path:
    """Create and return ``project/task/name``; when it exists and ``exist_ok`` is false, the first
    free ``name2``, ``name3``, ... instead, so that nothing an earlier run wrote is touched."""
    parent = Path(project) / task
    parent.mkdir(parents=True, exist_ok=True)
    candidate = parent / name
    n = 1
    while True:
        try:
            candidate.mkdir(exist_ok=exist_ok)
            return candidate
        except FileExistsError:
            n += 1
            candidate = parent / f"{name}{n}"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
