"""Restricted unpickling of checkpoints written by other libraries, without importing them.

A PyTorch ``.pt`` file is a pickle: loading it with ``torch.load(weights_only=False)`` runs whatever
code it names. Files written by other libraries (Ultralytics pickles its whole ``nn.Module`` tree)
hold classes ``weights_only=True`` refuses. This module lists every global a file refers to (by
reading the pickle's opcodes, which runs nothing) and admits only:

- PyTorch's own ``torch.nn`` module classes (real classes: building them runs no user code),
- numpy scalars and arrays, ``pathlib`` paths, ``types.SimpleNamespace``,
- classes under the ``foreign`` prefixes (e.g. ``ultralytics.``), which are *not imported*: each is
  replaced by a stand-in (:class:`ForeignModule`, an ``nn.Module`` that only holds the pickled
  state: submodules, parameters, buffers and attributes), so their code never runs either.

Anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) is refused before the
first byte is unpickled, with one message naming it. The loading itself is PyTorch's restricted
unpickler (``torch.load(weights_only=True)`` with the admitted globals), not a hand-written one.
"""

from __future__ import annotations

import importlib
import pathlib
import pickle
import types
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detector.errors import ConfigError

# Globals that are data, not behaviour: (importable name -> object). numpy's names moved in 2.0
# (``numpy.core`` -> ``numpy._core``); files name whichever the writer had.
_DATA_GLOBALS: dict[str, Any] = {
    "numpy.dtype": np.dtype,
    "numpy.ndarray": np.ndarray,
    "numpy.core.multiarray.scalar": np._core.multiarray.scalar,
    "numpy._core.multiarray.scalar": np._core.multiarray.scalar,
    "numpy.core.multiarray._reconstruct": np._core.multiarray._reconstruct,
    "numpy._core.multiarray._reconstruct": np._core.multiarray._reconstruct,
    "pathlib.Path": pathlib.Path,
    "pathlib.PosixPath": pathlib.PosixPath,
    "pathlib.WindowsPath": pathlib.WindowsPath,
    "pathlib.PurePosixPath": pathlib.PurePosixPath,
    "pathlib.PureWindowsPath": pathlib.PureWindowsPath,
    "types.SimpleNamespace": types.SimpleNamespace,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
}


class ForeignModule(nn.Module):
    """Stand-in for a class of another library: holds the unpickled state and nothing else.

    ``foreign_name`` is the class's full name in the file (``ultralytics.nn.modules.conv.Conv``).
    As an ``nn.Module`` it keeps ``state_dict()``, ``named_modules()`` and the pickled attributes
    (Ultralytics' ``yaml``, ``names``, ``nc`` ...), but has no forward.
    """

    foreign_name: str = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # called only for objects pickled by REDUCE
        super().__init__()

    def extra_repr(self) -> str:
        return self.foreign_name


def _stand_in(name: str) -> type[ForeignModule]:
    return type(name.rsplit(".", 1)[-1], (ForeignModule,), {"foreign_name": name, "__module__": __name__})


def _torch_module_class(name: str) -> type[nn.Module] | None:
    """The real class for a ``torch.nn.modules.*`` name, if it is an ``nn.Module`` subclass there."""
    module_name, _, attr = name.rpartition(".")
    if not module_name.startswith("torch.nn.modules."):
        return None
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


def globals_in(path: Path) -> list[str]:
    """Every global the checkpoint's pickle refers to beyond what ``weights_only`` allows (nothing runs)."""
    if not zipfile.is_zipfile(path):
        raise ConfigError(
            f"{path}: not a PyTorch zip checkpoint (legacy or raw pickles are refused: they cannot be checked)"
        )
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as err:
        raise ConfigError(
            f"{path}: unreadable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from err


def safe_load(path: str | Path, foreign: tuple[str, ...]) -> Any:
    """Load ``path`` admitting only data, ``torch.nn`` modules and stand-ins for classes under the
    ``foreign`` name prefixes; raise :class:`ConfigError` naming the first other global (before
    anything is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path}")
    admitted: list[Any] = []
    for name in globals_in(path):
        if name in _DATA_GLOBALS:
            admitted.append((_DATA_GLOBALS[name], name))
        elif (cls := _torch_module_class(name)) is not None:
            admitted.append((cls, name))
        elif name.startswith(foreign):
            admitted.append((_stand_in(name), name))
        else:
            raise ConfigError(
                f"{path}: refused: the pickle refers to '{name}', which is not part of a model checkpoint "
                "and could run code when loaded; nothing was loaded or run"
            )
    try:
        with torch.serialization.safe_globals(admitted), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{path}: refused by the restricted unpickler: {first}") from err
    except (RuntimeError, zipfile.BadZipFile, EOFError) as err:
        raise ConfigError(f"{path}: unreadable checkpoint ({type(err).__name__})") from err
