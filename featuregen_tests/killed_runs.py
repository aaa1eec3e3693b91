"""What the kill-and-resume tests share: `featuregen run` in a subprocess, stopped once it is
part way, the downloaded images a category starts with, and what a step's checkpoint holds."""

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from featuregen_assets.core.store import db
from featuregen_assets.settings import Settings

CATEGORY = "big"


def start_run(env: dict[str, str], asset: str, *, quiet: bool = True) -> subprocess.Popen:
    """`featuregen run --category big --select <asset>` with `env`, output discarded (stderr
    kept unless `quiet`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "featuregen_assets.cli", "run", "--category", CATEGORY]
        + ["--select", asset],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if quiet else None,
    )


def signal_when(
    run: subprocess.Popen,
    ready: Callable[[], bool],
    sig: signal.Signals = signal.SIGKILL,
    *,
    within_s: float = 180,
    poll_s: float = 0.05,
) -> float:
    """Send `sig` to `run` once `ready()` holds (failing if the run ends first, or after
    `within_s`); returns when it was sent (`time.monotonic`)."""
    deadline = time.monotonic() + within_s
    while not ready():
        assert run.poll() is None, "the run ended before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(poll_s)
    sent = time.monotonic()
    run.send_signal(sig)
    return sent


def killed_after_chunks(
    env: dict[str, str], asset: str, home: Path, chunks: int, columns: Sequence[str]
) -> tuple[subprocess.Popen, Path, set[str]]:
    """Run `asset` on the category and SIGKILL it once its checkpoint under `home` holds
    `chunks` chunks: the killed run, its checkpoint directory and the keys that holds."""
    run = start_run(env, asset)
    checkpoints = home / "checkpoints" / asset / CATEGORY
    signal_when(run, lambda: len(list(checkpoints.rglob("*.rows"))) >= chunks)
    run.wait()
    directory, keys = checkpointed(checkpoints, columns)
    return run, directory, keys


def store_downloaded(links_dir: Path, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
    """`rows` (category, url, status, image_id, path) as the `raw_images` of a finished
    download, and the link file they came from (featuregen run refuses a category without)."""
    (links_dir / f"{CATEGORY}.txt").write_text("".join(f"{row[1]}\n" for row in rows))
    with db.connection(Settings.from_env().database_url) as conn:
        conn.cursor().executemany(
            "INSERT INTO raw_images (category, url, status, image_id, path)"
            " VALUES (%s, %s, %s, %s, %s)",
            rows,
        )


def checkpointed(checkpoints: Path, columns: Sequence[str]) -> tuple[Path, set[str]]:
    """The one checkpoint directory under `checkpoints` (a step's, per model), and the keys
    its chunks hold; each chunk's columns are checked to be `columns`."""
    [directory] = {path.parent for path in checkpoints.rglob("*.rows")}
    keys: set[str] = set()
    for path in directory.glob("*.rows"):
        with path.open("rb") as f:
            assert np.load(f).tolist() == list(columns)
            keys.update(np.load(f).tolist())
    return directory, keys


def latest_metadata(asset: str) -> dict[str, Any]:
    """The metadata of `asset`'s latest materialisation on the test's Dagster instance."""
    with dg.DagsterInstance.get() as instance:
        [record] = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    return record.asset_materialization.metadata
