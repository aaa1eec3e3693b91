"""Import cost: what every Dagster step subprocess, `dagster dev` and the CLI pay to start.

    python benchmarks/imports.py [--repeat 5] [--baseline main~3]

Each statement runs in a fresh interpreter, `--repeat` times; CPU seconds (user + system)
come from the child's rusage, max RSS likewise. Prints the median CPU, wall and RSS of each,
and the ratio to `import dagster` alone. With `--baseline REF`, the same statements run again
against that commit's `featuregen_assets` (extracted with `git archive`), in the same run, so
before and after are measured under the same load. The 1-minute load average is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATEMENTS = {
    "import dagster": "import dagster",
    "import featuregen_assets.definitions": "import featuregen_assets.definitions",
    "featuregen --help": "import contextlib, io, sys\nfrom featuregen_assets.cli import main\n"
    "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
    "    main(['--help'])",
}
HEAVY = ("torch", "transformers")


def run_once(statement: str, tree: Path) -> tuple[float, float, float, str]:
    """CPU s, wall s, max RSS MB of one fresh interpreter running `statement` in `tree`, and
    which of HEAVY it left imported."""
    probe = f"{statement}\nimport sys\nprint('HEAVY', *[m for m in {HEAVY!r} if m in sys.modules])"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", probe], env=env, cwd=tree, stdout=subprocess.PIPE, text=True
    )
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{statement!r} failed in {tree}")
    cpu = usage.ru_utime + usage.ru_stime
    heavy = next(line for line in out.splitlines() if line.startswith("HEAVY"))[6:] or "-"
    return cpu, wall, usage.ru_maxrss / 1024, heavy


def measure(tree: Path, repeat: int) -> dict[str, tuple[float, float, float, str]]:
    """The median CPU, wall and the max RSS of each statement over `repeat` runs, interleaved."""
    samples: dict[str, list[tuple[float, float, float, str]]] = {k: [] for k in STATEMENTS}
    for _ in range(repeat):
        for name, statement in STATEMENTS.items():
            samples[name].append(run_once(statement, tree))
    return {
        name: (
            statistics.median(s[0] for s in runs),
            statistics.median(s[1] for s in runs),
            max(s[2] for s in runs),
            runs[-1][3],
        )
        for name, runs in samples.items()
    }


def extract(ref: str, into: Path) -> Path:
    """`ref`'s tree (featuregen_assets only) under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "featuregen_assets"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def table(label: str, results: dict[str, tuple[float, float, float, str]]) -> None:
    base = results["import dagster"][0]
    print(f"\n{label}\n")
    print("| statement | CPU s | ÷ import dagster | wall s | max RSS MB | heavy modules |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, (cpu, wall, rss, heavy) in results.items():
        print(f"| `{name}` | {cpu:.2f} | {cpu / base:.2f}× | {wall:.2f} | {rss:.0f} | {heavy} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", help="a git ref to measure beside the working tree")
    args = parser.parse_args()
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.1f}, CPUs: {os.cpu_count()}")
    baseline_dir = Path(tempfile.mkdtemp()) if args.baseline else None
    try:
        if baseline_dir is not None:
            extract(args.baseline, baseline_dir)
            table(f"baseline {args.baseline}", measure(baseline_dir, args.repeat))
        table("working tree", measure(ROOT, args.repeat))
    finally:
        if baseline_dir is not None:
            shutil.rmtree(baseline_dir)
    print(f"\nload average (1 min) at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
