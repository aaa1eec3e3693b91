"""`featuregen demo` (the offline demo) and `featuregen models build-tiny`; both import the
demo package only when they run."""

import argparse

from featuregen_assets.cli.common import (
    DEMO_DEFAULTS,
    add_command,
    cli_settings,
    database_url,
    errors_as_lines,
    positive,
)


def _demo_category(name: str) -> str:
    """An argparse type: one of the demo's categories."""
    from featuregen_assets.demo.scenes import CATEGORIES

    if name not in CATEGORIES:
        raise argparse.ArgumentTypeError(
            f"unknown demo category {name!r}: choose from {', '.join(CATEGORIES)}"
        )
    return name


def _cmd_demo(args: argparse.Namespace) -> int:
    from featuregen_assets.demo.run import SCALES, run_demo

    return run_demo(
        cli_settings(DEMO_DEFAULTS),
        per_category=args.per_category or SCALES[args.scale],
        categories=args.categories,
        seed=args.seed,
    )


def _cmd_models(args: argparse.Namespace) -> int:
    if args.action == "build-tiny":
        from featuregen_assets.demo.tiny_models import ensure_tiny_models

        root = ensure_tiny_models(cli_settings().models_root())
        print(f"tiny models in {root / 'tiny'}")
        return 0
    from featuregen_assets.core.store import db
    from featuregen_assets.core.store.registry import models_of, promote

    settings = cli_settings()
    with db.connection(database_url(settings)) as conn:
        if args.action == "promote":
            if not args.version:
                args.usage("promote needs the version: featuregen models promote VERSION")
            with errors_as_lines(LookupError):
                record = promote(conn, args.name, args.version)
            print(f"{record.name} {record.version} is served now (search, serve, the API)")
            return 0
        for record, served in models_of(conn, args.name):
            figure = record.metrics.get("validation_recall@5")
            shown = "" if figure is None else f"  validation recall@5 {float(figure):.3f}"
            print(f"{'*' if served else ' '} {record.version}  {record.embedding_model}{shown}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add `demo`, `models` to the `featuregen` commands."""
    demo = add_command(
        commands,
        "demo",
        _cmd_demo,
        help="Offline demo: synthetic images served on 127.0.0.1, every pipeline run.",
        description="Generate synthetic scenes, serve them on 127.0.0.1, write link files, run"
        " every category's pipeline with the tiny models and print what the tables hold.",
    )
    demo.add_argument(
        "--per-category",
        type=positive(int),
        help="Images per category, 1 or more (default: set by --scale).",
    )
    demo.add_argument(
        "--scale",
        choices=["demo", "report"],
        default="demo",
        help="demo: 64 images per category (~3 min); report: 256 (about 50 test images per"
        " category, the research report's size).",
    )
    demo.add_argument(
        "--categories", nargs="+", type=_demo_category, help="Categories (default: all nine)."
    )
    demo.add_argument("--seed", type=int, default=0, help="Seed of the synthetic scenes.")

    models = add_command(
        commands,
        "models",
        _cmd_models,
        help="Build the tiny models; list or promote trained versions.",
        description="`featuregen models build-tiny` builds the tiny profile's random-weight,"
        " architecture-identical models once, deterministically, and prints where they are."
        " `featuregen models list` lists the trained versions (* = served);"
        " `featuregen models promote VERSION` makes one the version search serves (a newly"
        " trained text encoder is served by itself only when its validation recall@5 beats"
        " the served one's).",
    )
    models.add_argument("action", choices=["build-tiny", "list", "promote"])
    models.add_argument("version", nargs="?", help="promote: the version to serve.")
    models.add_argument(
        "--name", default="aligned_text_encoder", help="The trained model (default the encoder)."
    )
