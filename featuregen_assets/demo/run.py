"""The offline demo: synthetic scenes served on 127.0.0.1, run through every pipeline."""

import dataclasses
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from featuregen_assets.demo.report_budget import DEMO_REPORT_BUDGET
from featuregen_assets.settings import Settings

LOOPBACK = "127.0.0.1"
# Images per category: the demo's default, and the report's (about 50 test images a category).
SCALES = {"demo": 64, "report": 256}
FIGURES_EXPLAINED = """
what the figures mean (test images: ~20% by image id plus every image showing a held-out
combination; never trained on, never used for tuning):
  recall@k          share of test captions whose image is among the k nearest test images
  median_rank       rank of a test caption's image among the test images (1 = first)
  chance_recall@5   the same for a random ranking; untrained_recall@5: the encoder before training
  psnr, ssim        decoded test images against the originals (mean_image_psnr: the average image)
  reencoded_*       decoded images embedded again: cosine to their source vector, and how often
                    that vector finds its own image first (top1; chance_top1 for a random pick)
  example queries   ranks over every stored image, training images included
The full comparison with baselines (category oracle, keyword and caption search, nearest
neighbour), with 95% intervals, follows: research_report (`featuregen report` reruns it);
figures at report scale in benchmarks/RESULTS.md."""


# The trainings' epoch lines, at most this often a step: minutes of silence look hung.
TRAINING_LINES_EVERY_S = 10.0
# torch's threads in the demo's trainings: its models are tiny, and on a shared 2-vCPU host two
# threads that wait for each other took ~10x longer an epoch than one (benchmarks/RESULTS.md).
DEMO_TORCH_THREADS = 1
# The category runs' model steps (tiny captioner, DINOv2, MiniLM) unless FEATUREGEN_TORCH_THREADS
# or FEATUREGEN_NUM_WORKERS say otherwise: one torch thread and no loader processes. On 2 shared
# vCPUs, 2 threads and 2 loader workers took 2.5x the CPU seconds (benchmarks/RESULTS.md).
DEMO_LOADER_WORKERS = 0


class Phases:
    """Prints each phase of the demo as it starts, after the time since the demo began."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def seconds(self) -> float:
        """Seconds since the demo began."""
        return time.perf_counter() - self.started

    def __call__(self, text: str) -> None:
        minutes, seconds = divmod(int(self.seconds()), 60)
        print(f"[{minutes:2d}:{seconds:02d}] {text}", flush=True)


def demo_settings(settings: Settings) -> Settings:
    """`settings` with the loopback server admitted, link files under the state directory and
    the model steps' threads and loader workers the demo's, where not set."""
    download = settings.download
    if LOOPBACK not in download.allowed_networks:
        allowed = (*download.allowed_networks, LOOPBACK)
        download = dataclasses.replace(download, allowed_networks=allowed)
    links_dir = settings.home / "demo" / "links"
    compute = settings.compute
    threads, workers = compute.torch_threads, compute.num_workers
    compute = dataclasses.replace(
        compute,
        torch_threads=DEMO_TORCH_THREADS if threads is None else threads,
        num_workers=DEMO_LOADER_WORKERS if workers is None else workers,
    )
    return dataclasses.replace(settings, download=download, links_dir=links_dir, compute=compute)


def demo_site(home: Path) -> Path:
    """Where the demo writes its scenes: images/, masks/ (label masks), truth/ (scene records)."""
    return home / "demo" / "site"


def demo_queries(home: Path) -> Path:
    """The demo's query sets, written from its scenes' truth."""
    return home / "demo" / "queries.jsonl"


def report_inputs(home: Path) -> dict[str, str]:
    """The demo's files under `home` that exist, as research_report's config: its query sets
    (`query_file`), label masks (`probe_masks`) and scene records (`probe_records`)."""
    site = demo_site(home)
    found = {
        "query_file": demo_queries(home),
        "probe_masks": site / "masks",
        "probe_records": site / "truth",
    }
    return {key: str(path) for key, path in found.items() if path.exists()}


def _sha256(path: Path) -> str:
    """An image's id: the sha256 of its bytes, as raw_images stores it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_queries(scenes, site: Path, out: Path) -> Path:
    """The scenes' query sets as JSON lines, positives by image id (sha256 of the file)."""
    from featuregen_assets.demo.scenes import scene_queries

    ids = {s.name: _sha256(site / "images" / s.filename) for s in scenes}
    lines = []
    for q in scene_queries(scenes):
        for key in ("positives", "matches"):
            q[key] = [ids[name] for name in q[key]]
        q["image_id"] = ids[q.pop("scene")]
        q["hard_negative"] = ids.get(q["hard_negative"])
        lines.append(json.dumps(q))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def run_demo(
    settings: Settings,
    per_category: int = 64,
    categories: Sequence[str] | None = None,
    seed: int = 0,
) -> int:
    """Generate, serve, ingest, caption, embed and summarise; 0 when every run succeeded."""
    from featuregen_assets.core.store import db
    from featuregen_assets.core.store.summary import format_table, summarize
    from featuregen_assets.demo.scenes import (
        CATEGORIES,
        HELD_OUT_COMBINATIONS,
        generate_dataset,
        write_link_files,
    )
    from featuregen_assets.demo.server import DemoServer
    from featuregen_assets.demo.tiny_models import ensure_tiny_models
    from featuregen_assets.launch.runs import (
        dagster_instance,
        materialize_report,
        materialize_unpartitioned,
        run_category,
    )
    from featuregen_assets.research.report import summary_lines

    settings = demo_settings(settings)
    home = settings.home
    if settings.models == "tiny":
        ensure_tiny_models(settings.models_root())
    categories = list(categories or CATEGORIES)
    phase = Phases()
    site = demo_site(home)
    phase(f"generating {per_category} synthetic scenes a category ...")
    scenes = generate_dataset(site, categories, per_category, seed)
    queries = write_queries(scenes, site, demo_queries(home))
    phase(f"generated {len(scenes)} synthetic scenes in {site}; their query sets: {queries}")

    instance = dagster_instance(settings)
    failures = []
    with DemoServer(site, port=settings.demo_port) as server:
        write_link_files(scenes, server.base_url, settings.links_dir)
        phase(f"serving them at {server.base_url}; link files in {settings.links_dir}")
        phase("download, caption and embed each category (one run each) ...")
        for category in categories:
            result = run_category(
                category, instance=instance, log_level="WARNING", settings=settings
            )
            status = "ok" if result.success else "FAILED"
            phase(f"  {category}: run {result.run_id[:8]} {status}")
            if not result.success:
                failures.append(category)

    url = db.migrated_url(settings.database_url, home)
    with db.connection(url) as conn:
        summaries = summarize(conn, list(categories))
    print()
    print(format_table(summaries))

    print()
    phase("training aligned_text_encoder and decoder_model on every category ...")
    training = materialize_unpartitioned(
        ["aligned_text_encoder", "decoder_model"],
        instance=instance,
        # The tiny captioner's words are random: train the text side on the link captions.
        # Images showing a held-out combination are test images (the compositional split).
        run_config={
            "ops": {
                "aligned_text_encoder": {
                    "config": {
                        "prompt_source": "link_caption",
                        "test_phrases": list(HELD_OUT_COMBINATIONS),
                        "torch_threads": DEMO_TORCH_THREADS,
                    }
                },
                "decoder_model": {"config": {"torch_threads": DEMO_TORCH_THREADS}},
            },
        },
        every_s=TRAINING_LINES_EVERY_S,
        settings=settings,
    )
    if not training.success:
        failures.append("training")
    print_headlines(training)

    phase("trained")
    print(FIGURES_EXPLAINED)
    if training.success:
        print()
        phase("research_report: every method beside fair baselines on the same test split ...")
        _, report = materialize_report(
            report_inputs(home),
            instance=instance,
            settings=settings,
            **DEMO_REPORT_BUDGET,
        )
        if report:
            print("\n".join(summary_lines(report)))
            print(f"\nfull report (every query set and metric, plots): {report}")
        else:
            failures.append("research_report")
        print_examples(scenes, site, url, settings)  # the default mode: the report's best
    print()
    phase(f"demo finished in {phase.seconds():.0f} s")
    command = featuregen_command()
    print(
        f'tables: psql "$({command} db url)"   Dagster UI: {command} dev (http://127.0.0.1:3000/)'
    )
    print(f"search page and API: {command} serve  (http://127.0.0.1:8000/)")
    return 1 if failures else 0


def print_headlines(training) -> None:
    """Each trained model's headline figures from its materialisation's metadata."""
    from featuregen_assets.assets.models import aligned_text_encoder, decoder_model

    for key, figures in (
        ("aligned_text_encoder", aligned_text_encoder.HEADLINE),
        ("decoder_model", decoder_model.HEADLINE),
    ):
        events = training.asset_materializations_for_node(key)
        if events:
            metadata = events[0].metadata
            shown = ", ".join(
                f"{name} {metadata[name].value:.3g}" for name in figures if name in metadata
            )
            print(f"  {key}: {shown}")


def featuregen_command(executable: str = sys.executable, cwd: Path | None = None) -> str:
    """How to type this installation's `featuregen`: its name where PATH finds this one, else
    its path (relative to the working directory when inside it, as `.venv/bin/featuregen`)."""
    command = Path(executable).with_name("featuregen")
    found = shutil.which("featuregen")
    if not command.is_file() or (found and Path(found).resolve() == command.resolve()):
        return "featuregen"
    try:
        return str(command.relative_to(cwd or Path.cwd()))
    except ValueError:
        return str(command)


def print_examples(scenes, site: Path, url: str, settings: Settings) -> None:
    """Search each example query over every stored image in the default mode (as `featuregen
    search` does); print where its images rank."""
    from featuregen_assets.core.search.engine import MAX_K, SearchQuery
    from featuregen_assets.core.store import db
    from featuregen_assets.demo.scenes import example_queries
    from featuregen_assets.serve.main import build_searcher

    files = {s.name: site / "images" / s.filename for s in scenes}
    searcher = build_searcher(settings)
    mode, reason = searcher.default_choice()
    print(f"\nexample queries in the default mode, {mode} ({reason}):")
    with db.connection(url) as conn:
        searcher.warm(conn)  # exports the query encoders' graphs: later searches skip torch
        for query, names in example_queries(scenes):
            expected = {_sha256(files[n]) for n in names}
            every = SearchQuery(text=query, k=min(len(scenes), MAX_K))
            hits = searcher.search(conn, every).hits
            ranks = [r for r, hit in enumerate(hits, start=1) if hit.image_id in expected]
            found = "found" if ranks and ranks[0] <= 5 else "NOT in the top 5"
            shown = ", ".join(map(str, ranks[:8])) + (" ..." if len(ranks) > 8 else "")
            print(f'  featuregen search "{query}"')
            print(f"    {len(expected)} images match; ranks of {len(hits)}: {shown} ({found})")
            for rank, hit in enumerate(hits[:3], start=1):
                print(f"    {rank}  {hit.score:.3f}  {hit.category:<14} {hit.caption}")
