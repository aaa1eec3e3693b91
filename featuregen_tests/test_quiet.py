"""Loading a model prints no progress bar once `quiet_model_loading` ran (before or after
transformers is imported), and `featuregen search` prints none while it loads its encoders."""

import os
import subprocess
import sys
from pathlib import Path

from featuregen_assets.cli.search_serve import LOADING_HERE
from featuregen_tests.search_store import build_search_store

LOAD = (
    "from featuregen_assets.core.text.sentences import BUNDLED, SentenceModel\n"
    "SentenceModel(BUNDLED)\n"
)
QUIET = (
    "from featuregen_assets.core.runtime.quiet import quiet_model_loading\nquiet_model_loading()\n"
)
IMPORTED = "import transformers.utils.logging\n"
BAR = "Loading weights"


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_quiet_model_loading_turns_the_loading_bar_off() -> None:
    python = [sys.executable, "-c"]
    assert BAR in _run([*python, IMPORTED + LOAD]).stderr  # what a benchmark printed
    assert BAR not in _run([*python, QUIET + LOAD]).stderr
    assert BAR not in _run([*python, IMPORTED + QUIET + LOAD]).stderr


def test_search_prints_no_loading_bar(fg_env: Path, database_url: str, tiny_models_dir) -> None:
    build_search_store(database_url, fg_env, tiny_models_dir)
    search = ["-m", "featuregen_assets.cli", "search", "a red circle", "-k", "1"]
    done = _run([sys.executable, *search])  # hybrid: the sentence and text encoders load
    assert done.stderr.splitlines() == [LOADING_HERE] and "hybrid search" in done.stdout
