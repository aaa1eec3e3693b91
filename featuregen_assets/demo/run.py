"""The offline demo: synthetic scenes served on 127.0.0.1, run through every pipeline."""

import dataclasses
import time
from collections.abc import Sequence

from featuregen_assets.settings import Settings

DEMO_QUERY = "a large red circle at the top left"
LOOPBACK = "127.0.0.1"


def demo_settings(settings: Settings) -> Settings:
    """`settings` with the loopback server admitted and link files under the state directory."""
    download = settings.download
    if LOOPBACK not in download.allowed_networks:
        allowed = (*download.allowed_networks, LOOPBACK)
        download = dataclasses.replace(download, allowed_networks=allowed)
    links_dir = settings.home / "demo" / "links"
    return dataclasses.replace(settings, download=download, links_dir=links_dir)


def run_demo(
    settings: Settings,
    per_category: int = 64,
    categories: Sequence[str] | None = None,
    seed: int = 0,
) -> int:
    """Generate, serve, ingest, caption, embed and summarise; 0 when every run succeeded."""
    from featuregen_assets.assets.models import aligned_text_encoder, decoder_model
    from featuregen_assets.core.search.engine import search_text
    from featuregen_assets.core.store import db, schema
    from featuregen_assets.core.store.summary import format_table, summarize
    from featuregen_assets.demo.scenes import CATEGORIES, generate_dataset, write_link_files
    from featuregen_assets.demo.server import DemoServer
    from featuregen_assets.demo.tiny_models import ensure_tiny_models
    from featuregen_assets.runs import (
        dagster_instance,
        materialize_unpartitioned,
        quiet_logs,
        run_category,
    )

    settings = demo_settings(settings)
    home = settings.home
    if settings.models == "tiny":
        ensure_tiny_models(settings.models_root())
    categories = list(categories or CATEGORIES)
    started = time.perf_counter()
    site = home / "demo" / "site"
    scenes = generate_dataset(site, categories, per_category, seed)
    print(f"generated {len(scenes)} synthetic scenes in {site}")

    instance = dagster_instance(settings)
    failures = []
    with DemoServer(site, port=settings.demo_port) as server:
        write_link_files(scenes, server.base_url, settings.links_dir)
        print(f"serving them at {server.base_url}; link files in {settings.links_dir}")
        for category in categories:
            result = run_category(
                category, instance=instance, log_level="WARNING", settings=settings
            )
            status = "ok" if result.success else "FAILED"
            print(f"  {category}: run {result.run_id[:8]} {status}")
            if not result.success:
                failures.append(category)

    url = schema.migrated_url(settings.database_url, home)
    with db.connection(url) as conn:
        summaries = [s for s in summarize(conn) if s.category in categories]
    print()
    print(format_table(summaries))

    print("\ntraining aligned_text_encoder and decoder_model on every category ...")
    training = materialize_unpartitioned(
        ["aligned_text_encoder", "decoder_model"],
        instance=instance,
        # The tiny captioner's words are random: train the text side on the link captions.
        run_config={
            "ops": {"aligned_text_encoder": {"config": {"prompt_source": "link_caption"}}},
            **quiet_logs("WARNING"),
        },
        settings=settings,
    )
    if not training.success:
        failures.append("training")
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

    if training.success:
        query = DEMO_QUERY
        with db.connection(url) as conn:
            hits = search_text(conn, query, k=5)
        print(f'\nfeaturegen search "{query}" -k 5')
        for rank, hit in enumerate(hits, start=1):
            print(f"  {rank}  {hit.score:.3f}  {hit.category:<14} {hit.caption}")
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s")
    print(f'tables: psql "$(featuregen db url)"   UI: dagster dev (DAGSTER_HOME={home}/dagster)')
    print("search page and API: featuregen serve  (http://127.0.0.1:8000/)")
    return 1 if failures else 0
