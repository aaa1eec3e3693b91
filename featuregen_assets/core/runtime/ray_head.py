"""A local Ray head of featuregen's own: started on free ports in a temporary directory of its
own (so it never meets another Ray cluster on the machine, nor the address that the last
`ray start` left in /tmp/ray/ray_current_cluster), found again by its record when kept, and
stopped by its own process tree (never `ray stop`, which stops every Ray process of the
machine).

`ray start --head --block` is the head's parent process: SIGTERM to it shuts the head down,
and with `die_with_caller` Linux sends that SIGTERM when the process that started it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from featuregen_assets.core.runtime.processes import PR_SET_PDEATHSIG, is_running

# Every port a head listens on that has a fixed default (6379, 8265, 52365, 10001, ...): a
# second head with the defaults fails ("No available agent to submit job") or joins the first.
PORT_OPTIONS = (
    "--port",
    "--dashboard-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
    "--ray-client-server-port",
)


class HeadStartFailed(RuntimeError):
    """`ray start` exited or its head did not come up in time."""


@dataclass(frozen=True)
class LocalRayHead:
    """A head started by `start_local_head`: its job-submission address (`dashboard_url`),
    GCS address, the `ray start --block` process and the head's temporary directory."""

    dashboard_url: str
    gcs_address: str
    pid: int
    temp_dir: str

    def processes(self) -> list[psutil.Process]:
        """The head's processes now: `ray start` and its descendants (Ray's workers and the
        job drivers they started included)."""
        try:
            parent = psutil.Process(self.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, grace_s: float = 30.0) -> list[int]:
        """Stop the head: SIGTERM to `ray start` (which shuts its processes down), SIGKILL to
        whatever of its process tree is left after `grace_s`; remove its directory. Returns
        the ids of the processes that had to be killed."""
        tree = self.processes()
        for process in tree[:1]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=grace_s)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return [process.pid for process in alive]

    def save(self, path: Path) -> None:
        """Record the head in `path` (JSON), for `find_kept_head`."""
        path.write_text(json.dumps(asdict(self)))


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on this host now (held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _die_with_caller() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def start_local_head(
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    die_with_caller: bool = True,
    timeout_s: float = 180.0,
) -> LocalRayHead:
    """Start a Ray head on this host (`num_cpus`/`num_gpus`: what it declares; None: what the
    host has) and wait until it takes jobs. Its dashboard listens on 127.0.0.1 only. With
    `die_with_caller` it stops when this process dies (Linux), however it dies.

    Raises `HeadStartFailed` with the end of `ray start`'s output when it exits or the head
    is not up within `timeout_s` (the half-started head stopped)."""
    temp_dir = tempfile.mkdtemp(prefix="featuregen-ray-", dir="/tmp")  # short: Unix sockets
    ports = dict(zip(PORT_OPTIONS, free_ports(len(PORT_OPTIONS)), strict=True))
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--block",
        "--disable-usage-stats",
        "--dashboard-host=127.0.0.1",
        f"--temp-dir={temp_dir}",
        *(f"{option}={port}" for option, port in ports.items()),
        *([f"--num-cpus={num_cpus}"] if num_cpus is not None else []),
        *([f"--num-gpus={num_gpus}"] if num_gpus is not None else []),
    ]
    output = Path(temp_dir) / "ray-start.log"
    with output.open("w") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the terminal's Ctrl-C reaches the run, not the head
            preexec_fn=_die_with_caller if die_with_caller else None,
        )
    dashboard_url = f"http://127.0.0.1:{ports['--dashboard-port']}"
    deadline = time.monotonic() + timeout_s
    while not (_gcs_address(temp_dir) and _takes_jobs(dashboard_url)):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = output.read_text()[-2000:]
            LocalRayHead(dashboard_url, "", process.pid, temp_dir).stop(grace_s=10)
            state = f"exited ({process.returncode})" if process.poll() is not None else "hung"
            raise HeadStartFailed(f"`ray start --head` {state}: {tail.strip()}")
        time.sleep(1)
    return LocalRayHead(dashboard_url, _gcs_address(temp_dir), process.pid, temp_dir)


def _gcs_address(temp_dir: str) -> str:
    """The GCS address `ray start` records in its temporary directory once its head is up
    (there, not in /tmp/ray, since it was given the directory); "" before."""
    try:
        return (Path(temp_dir) / "ray_current_cluster").read_text().strip()
    except FileNotFoundError:
        return ""


def _takes_jobs(dashboard_url: str) -> bool:
    """Whether the head's dashboard answers with its node up (through Ray's own client, which
    sends Ray's token where the head requires one)."""
    try:
        return bool(node_resources(dashboard_url))
    except ConnectionError:
        return False


def node_resources(address: str, timeout_s: float = 10.0) -> list[dict[str, float]]:
    """The resources each live node of the cluster at `address` (its dashboard's URL, or its
    GCS address) declares: `CPU`, `GPU`, `memory`, custom ones.

    Raises `ConnectionError` when the cluster does not answer or has no live node."""
    from ray.util.state import list_nodes

    try:
        nodes = list_nodes(
            address=address,
            filters=[("state", "=", "ALIVE")],
            timeout=int(timeout_s),
            raise_on_missing_output=False,
        )
    except Exception as error:  # noqa: BLE001 — Ray raises kinds of its own (RayStateApiException)
        reason = str(error).split(". ")[0]  # Ray's first sentence; its advice follows
        raise ConnectionError(f"the Ray cluster at {address} does not answer: {reason}") from error
    if not nodes:
        raise ConnectionError(f"the Ray cluster at {address} has no live node")
    return [dict(node.resources_total) for node in nodes]


def find_kept_head(record: Path) -> tuple[LocalRayHead | None, str | None]:
    """The kept head `record` names when it still answers; else None, with why the record (and
    the head's directory) was dropped (its head is gone) or None when there is no record."""
    if not record.exists():
        return None, None
    head = LocalRayHead(**json.loads(record.read_text()))
    if is_running(head.pid) and _takes_jobs(head.dashboard_url):
        return head, None
    record.unlink()
    shutil.rmtree(head.temp_dir, ignore_errors=True)  # its sockets and logs
    return None, f"the kept Ray head at {head.dashboard_url} (pid {head.pid}) is gone"
