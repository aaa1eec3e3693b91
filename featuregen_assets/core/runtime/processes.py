"""Processes of this host: the CPUs this one may use, whether one still exists (by pid, or by a
token a recycled pid cannot fake); a step process that dies with its run."""

import ctypes
import multiprocessing
import os
import signal
import sys
from pathlib import Path

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


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def process_token(pid: int | None = None) -> str:
    """`<pid>.<start time>` of a process (this one by default): unlike a pid, never reused by
    another process. Just `<pid>` where the start time cannot be read."""
    pid = os.getpid() if pid is None else pid
    started = _start_time(pid)
    return f"{pid}.{started}" if started else str(pid)


def token_alive(token: str) -> bool:
    """Whether the process a `process_token` names still runs (the same process, not a later
    one given its pid). A token without a start time falls back to `is_running`."""
    pid, _, started = token.partition(".")
    if not pid.isdigit():
        return False
    if not started or not Path("/proc/self/stat").exists():
        return is_running(int(pid))
    return _start_time(int(pid)) == started
