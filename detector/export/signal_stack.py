"""The thread's alternate signal stack, kept across the calls that load OpenVINO's CPU plugin.

OpenVINO's CPU plugin (2026.4, Linux) gives the thread that loads it into an ``openvino.Core`` an
alternate signal stack of its own (``sigaltstack`` on a fresh ``mmap``) and remembers the one it
replaced. When that Core is destroyed the plugin unmaps its stack and puts the remembered one back,
but only if its own is still the current one. Two Cores destroyed in the order they were made
therefore leave the thread's alternate stack on unmapped memory: the second one puts back the
first one's stack, which is gone. CPython installs every Python signal handler with
``SA_ONSTACK`` (SIGINT, SIGTERM, the data loader's SIGCHLD), so the next such signal kills the
process with SIGSEGV (the kernel cannot write the signal frame, and faulthandler cannot run
either), or, where the address has been mapped again meanwhile, writes its frame into whatever
lives there. Measured: two of our IRs loaded and dropped first to last, then one SIGUSR1 with a
Python handler: exit -11 (``tests/eval/test_openvino.py``); Ultralytics' benchmark side,
which holds two OpenVINO models at once, did the same to ``pytest -m slow``.

:func:`kept_signal_stack` puts back, on leaving its block, the alternate stack the thread had on
entering it. A Core made inside stays usable; when it is destroyed later its stack is no longer the
current one, so the plugin only unmaps its own and touches nothing else. Every place that loads the
plugin (compiling a model, NNCF's quantization, Ultralytics' OpenVINO backend) runs inside it.
Linux only (the plugin's code is); elsewhere the block runs as it is.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

SS_DISABLE = 2  # <signal.h>: no alternate stack


class StackT(ctypes.Structure):
    """``stack_t`` of Linux's ``<signal.h>``."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@cache
def libc() -> ctypes.CDLL:
    """The C library (the symbols the interpreter already has loaded)."""
    return ctypes.CDLL(None, use_errno=True)


def signal_stack() -> tuple[int, int] | None:
    """The calling thread's alternate signal stack as (address, size); None when it has none (or off
    Linux, where this is not asked)."""
    if not sys.platform.startswith("linux"):
        return None
    current = StackT()
    if libc().sigaltstack(None, ctypes.byref(current)) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack")
    if current.ss_flags & SS_DISABLE or not current.ss_sp:
        return None
    return current.ss_sp, current.ss_size


def set_signal_stack(stack: tuple[int, int] | None) -> None:
    """Make ``stack`` ((address, size) from :func:`signal_stack`, or None: none) the calling thread's
    alternate signal stack."""
    address, size = stack if stack is not None else (None, 0)
    wanted = StackT(address, SS_DISABLE if stack is None else 0, size)
    if libc().sigaltstack(ctypes.byref(wanted), None) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack")


@contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Run the block, then give the thread back the alternate signal stack it had before (see the
    module's docstring for why). Usable as a decorator too. Off Linux there is no stack to keep."""
    before = signal_stack()
    try:
        yield
    finally:
        if signal_stack() != before:
            set_signal_stack(before)
