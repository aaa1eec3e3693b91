"""Processes of this host: the CPUs this one may use, whether one still exists (by pid, or by a
token a recycled pid cannot fake); a step process that dies with its run; a child that the
signals sent to this process reach (`run_forwarding_signals`)."""

import ctypes
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1  # prctl option: the signal this process gets when its parent dies
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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


def run_forwarding_signals(command: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run `command` as a child in a process group of its own and wait for it; SIGINT, SIGTERM
    and SIGHUP sent to this process are passed on to the child, once each, and this process
    waits for it to finish. Returns its exit status (128 + the signal's number when a signal
    ended it, as shells say).

    The child starts with those signals at their defaults even when this process was started
    with them ignored (a shell's background job ignores SIGINT; `dagster dev` then maps SIGTERM
    onto that, and neither stops it). Its own process group keeps a terminal's Ctrl-C from
    reaching it twice."""
    child: list[subprocess.Popen] = []
    pending: list[int] = []

    def forward(signo: int, _frame: object) -> None:
        if child:
            child[0].send_signal(signo)
        else:
            pending.append(signo)

    previous = {signo: signal.signal(signo, forward) for signo in FORWARDED_SIGNALS}
    try:
        child.append(subprocess.Popen(list(command), env=env, process_group=0))
        for signo in pending:
            child[0].send_signal(signo)
        code = child[0].wait()
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)
    return code if code >= 0 else 128 - code
