"""Run directories: every run writes into its own ``<project>/<task>/<name>/``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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


def replace_atomic(path: Path, create: Callable[[Path], object]) -> Path:
    """Create ``path`` by letting ``create`` write a temporary file beside it (same suffix), then
    ``os.replace``: readers see the old file or the whole new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        create(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Create ``path`` atomically (see :func:`replace_atomic`) by calling ``write`` on an open binary file."""

    def create(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    return replace_atomic(path, create)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_atomic`)."""
    return write_atomic(path, lambda f: f.write(text.encode()))
