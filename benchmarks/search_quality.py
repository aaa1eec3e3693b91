"""Precision@5 of every search mode on object phrases drawn from the demo's scene records.

    python benchmarks/search_quality.py                  # FEATUREGEN_HOME holds a demo
    python benchmarks/search_quality.py --queries 300 --seed 1

The query sets are generated here from the scene truth (`<home>/demo/site/truth/*.json`) and
never stored in the repository: `plain` names one object of a random scene by colour and shape,
half of them with its size ("a red circle", "a large red circle"); `synonym` says the same with
words the captions never use ("a crimson circle", "a tiny azure star"). An image is a positive
when its scene holds an object of that colour and shape (and size, when named); precision@5 is
the share of the top 5 that are positives, with a 95 % bootstrap interval over queries. Each
mode is asked through the service's own engine (`serve.main.build_searcher`, the settings of
FEATUREGEN_HOME), so the default mode is the one `featuregen search` uses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])

from featuregen_assets.core.runtime.quiet import quiet_model_loading  # noqa: E402
from featuregen_assets.core.search.engine import SearchQuery, Unavailable  # noqa: E402
from featuregen_assets.core.search.modes import MODES  # noqa: E402
from featuregen_assets.core.store import db  # noqa: E402
from featuregen_assets.serve.main import build_searcher  # noqa: E402
from featuregen_assets.settings import Settings  # noqa: E402

COLOUR_SYNONYMS = {
    "red": ("crimson", "scarlet"),
    "green": ("lime", "jade"),
    "blue": ("azure", "cobalt"),
    "yellow": ("lemon", "canary"),
    "purple": ("lilac", "mauve"),
    "orange": ("tangerine", "apricot"),
    "white": ("ivory", "snowy"),
    "black": ("ebony", "jet"),
}
SIZE_SYNONYMS = {"small": ("tiny", "little"), "large": ("huge", "big")}


def scenes(site: Path) -> list[tuple[str, list[dict]]]:
    """(image id, objects) of every scene record; the id is the sha256 of the image file."""
    out = []
    for path in sorted((site / "truth").glob("*.json")):
        record = json.loads(path.read_text())
        image = site / record["image"]
        out.append((hashlib.sha256(image.read_bytes()).hexdigest(), record["objects"]))
    return out


def query_sets(records, count: int, rng: np.random.Generator) -> dict[str, list[tuple]]:
    """{set: [(query, positives)]}: plain and synonym phrases of random scenes' objects."""
    sets: dict[str, list[tuple]] = {"plain": [], "synonym": []}
    for _ in range(count):
        _, objects = records[rng.integers(len(records))]
        o = objects[rng.integers(len(objects))]
        sized = bool(rng.integers(2))
        wanted = (o["colour"], o["shape"], o["size"] if sized else None)
        positives = {
            image_id
            for image_id, objs in records
            if any(
                (x["colour"], x["shape"]) == wanted[:2] and wanted[2] in (None, x["size"])
                for x in objs
            )
        }
        size = f"{o['size']} " if sized else ""
        sets["plain"].append((f"a {size}{o['colour']} {o['shape']}", positives))
        colour = COLOUR_SYNONYMS[o["colour"]][rng.integers(2)]
        size = f"{SIZE_SYNONYMS[o['size']][rng.integers(2)]} " if sized else ""
        sets["synonym"].append((f"a {size}{colour} {o['shape']}", positives))
    return sets


def interval(values: list[float], rng: np.random.Generator) -> tuple[float, float]:
    means = [np.mean(rng.choice(values, len(values))) for _ in range(1000)]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200, help="queries per set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    quiet_model_loading()  # no "Loading weights" bar in the table
    settings = Settings.from_env()
    records = scenes(settings.home / "demo" / "site")
    rng = np.random.default_rng(args.seed)
    sets = query_sets(records, args.queries, rng)
    searcher = build_searcher(settings)
    default, why = searcher.default_choice()
    print(f"{len(records)} scenes in {settings.home}; default mode: {default} ({why})\n")
    print("| mode | query set | precision@5 [95 % interval] | queries | p50 ms (in process) |")
    print("| --- | --- | --- | --- | --- |")
    with db.connection(db.migrated_url(settings.database_url, settings.home)) as conn:
        for mode in MODES:
            for name, queries in sets.items():
                precision, ms = [], []
                for text, positives in queries:
                    started = time.perf_counter()
                    try:
                        answer = searcher.search(conn, SearchQuery(text=text, mode=mode.name, k=5))
                    except Unavailable as error:
                        print(f"| {mode.name} | {name} | unavailable: {error} | | |")
                        break
                    ms.append((time.perf_counter() - started) * 1000)
                    precision.append(sum(h.image_id in positives for h in answer.hits) / 5)
                if not precision:
                    continue
                low, high = interval(precision, rng)
                label = mode.name + (" (default)" if mode.name == default else "")
                print(
                    f"| {label} | {name} | {np.mean(precision):.3f} [{low:.3f}, {high:.3f}]"
                    f" | {len(queries)} | {statistics.median(ms):.1f} |"
                )


if __name__ == "__main__":
    main()
