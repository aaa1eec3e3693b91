"""A step process dies with the run worker that started it; a plain process is left alone."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from featuregen_assets.core.runtime.processes import die_with_parent, is_running

PARENT = """
import multiprocessing, sys, time
from featuregen_assets.core.runtime.processes import die_with_parent

def child(arrange):
    if arrange:
        assert die_with_parent()
    print("ready", flush=True)
    time.sleep(120)

if __name__ == "__main__":
    process = multiprocessing.get_context("spawn").Process(target=child, args=(sys.argv[1] == "1",))
    process.start()
    print(process.pid, flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Running and not a zombie waiting to be reaped."""
    if not is_running(pid):
        return False
    status = Path(f"/proc/{pid}/status").read_text()
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
@pytest.mark.parametrize("arrange", [True, False])
def test_a_child_that_arranged_it_dies_with_its_parent(tmp_path: Path, arrange: bool) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), "1" if arrange else "0"], stdout=subprocess.PIPE, text=True
    )
    child = int(parent.stdout.readline())
    assert parent.stdout.readline() == "ready\n"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + (10 if arrange else 1)
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert _alive(child) is not arrange
    finally:
        if is_running(child):
            os.kill(child, signal.SIGKILL)


def test_the_main_process_is_left_alone() -> None:
    assert die_with_parent() is False


def _arrange(results) -> None:
    results.put(die_with_parent())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_forkserver_child_is_left_alone_not_killed() -> None:
    """Its kernel parent is the fork server, not the process that asked for it."""
    context = multiprocessing.get_context("forkserver")
    results = context.Queue()
    child = context.Process(target=_arrange, args=(results,))
    child.start()
    assert results.get(timeout=60) is False
    child.join(timeout=60)
    assert child.exitcode == 0


# What `dagster dev` does with signals: SIGTERM takes SIGINT's handler, which is "ignore" when
# the process was started as a shell's background job.
_DAGSTER_LIKE = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))
try:
    print("ready", flush=True)
    time.sleep(120)
except KeyboardInterrupt:
    print("stopped cleanly", flush=True)
"""
_SUPERVISOR = """
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `featuregen dev &` starts in a script
from featuregen_assets.core.runtime.processes import run_forwarding_signals
sys.exit(run_forwarding_signals([sys.executable, "-c", sys.argv[1]]))
"""


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT])
def test_a_background_supervisor_passes_its_signal_on_and_waits(signo: int) -> None:
    supervisor = subprocess.Popen(
        [sys.executable, "-c", _SUPERVISOR, _DAGSTER_LIKE],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert supervisor.stdout.readline() == "ready\n"
        supervisor.send_signal(signo)
        assert supervisor.wait(timeout=60) == 0
        assert supervisor.stdout.read() == "stopped cleanly\n"
    finally:
        supervisor.kill()
