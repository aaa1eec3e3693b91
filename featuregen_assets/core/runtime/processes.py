"""Processes of this host: whether one still exists; a step process that dies with its run."""

import ctypes
import multiprocessing
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # prctl option: the signal this process gets when its parent dies


def is_running(pid: int) -> bool:
    """Whether a process with this id exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent() -> bool:
    """In a process that `multiprocessing` started (a Dagster step process), have Linux kill it
    when the process that started it (the run worker) dies, so that a model step never outlives
    its run and the GPU slot the run held. Returns whether it was arranged."""
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return False
    if os.getppid() != parent.pid:  # a forkserver's child: the kernel knows only the server
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent.pid:  # it died before the kernel had the request
        os.kill(os.getpid(), signal.SIGKILL)
    return True
