"""A file this test's thread really cannot read: mode 000, and, when the tests run as root,
without the two capabilities that let root read it anyway.

Root reads a mode-000 file because of CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH. `unreadable`
removes those two from the calling thread's effective set (capset(2); capabilities are
per thread on Linux, and threads started meanwhile inherit them) and puts them back afterwards,
so the code under test meets the kernel's own EACCES on open() — the case of the issue — with
nothing patched. Where neither works (not Linux, no capability to drop) the test is skipped.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_VERSION_3 = 0x20080522
_DAC_OVERRIDE, _DAC_READ_SEARCH = 1, 2


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _capabilities(libc: ctypes.CDLL, data: ctypes.Array | None = None) -> ctypes.Array:
    """This thread's capability sets (capget), or set them to `data` (capset)."""
    header = _Header(_VERSION_3, 0)
    if data is None:
        data = (_Data * 2)()
        call = libc.capget
    else:
        call = libc.capset
    if call(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget/capset failed")
    return data


@contextlib.contextmanager
def _without_dac_override() -> Iterator[None]:
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    try:
        saved = _capabilities(libc)
        dropped = (_Data * 2)()
        ctypes.memmove(dropped, saved, ctypes.sizeof(dropped))
        dropped[0].effective &= ~((1 << _DAC_OVERRIDE) | (1 << _DAC_READ_SEARCH))
        _capabilities(libc, dropped)
    except (OSError, AttributeError):
        pytest.skip("cannot drop this thread's capabilities")
    try:
        yield
    finally:
        _capabilities(libc, saved)


@contextlib.contextmanager
def unreadable(path: Path) -> Iterator[None]:
    """While inside, `path` cannot be opened by this thread (PermissionError); its mode is
    restored afterwards."""
    mode = path.stat().st_mode
    path.chmod(0)
    try:
        with _without_dac_override():
            try:
                path.open("rb").close()
            except PermissionError:
                yield
                return
        pytest.skip("cannot make a file unreadable to this process")
    finally:
        path.chmod(mode)
