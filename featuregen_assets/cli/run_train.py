"""`featuregen run` (a category's pipeline) and `featuregen train` (the trained models)."""

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from featuregen_assets.cli.common import (
    VERBOSE_HELP,
    add_command,
    cli_settings,
    errors_as_lines,
    positive,
    require_valid_category,
)
from featuregen_assets.core.ingest.link_formats import LINK_FILE_NAMES, TABLE_FORMATS

if TYPE_CHECKING:
    from featuregen_assets.settings import Settings


_TRAINED = {"text-encoder": "aligned_text_encoder", "decoder": "decoder_model"}


_TEXT_ENCODER_ONLY = ("recipe", "prompt_source")


ASSETS = (
    "raw_images",
    "image_prompts",
    "image_embeddings",
    "prompt_embeddings",
    *_TRAINED.values(),
)


def _figures(metadata: dict) -> str:
    """The numbers among a check's metadata, as `name value, ...`."""
    return ", ".join(
        f"{name} {entry.value:.3g}"
        for name, entry in metadata.items()
        if isinstance(entry.value, int | float)
    )


def _report(result, instance, settings: "Settings") -> int:
    """Print how a launched run went (failed checks, a failure summary); its exit status."""
    from featuregen_assets.launch.run_console import failure_summary

    failed_checks = [
        f"{evaluation.check_name} ({figures})"
        if (figures := _figures(evaluation.metadata))
        else evaluation.check_name
        for evaluation in result.get_asset_check_evaluations()
        if not evaluation.passed
    ]
    if failed_checks:
        print(f"failed checks: {', '.join(failed_checks)}", file=sys.stderr)
    if not result.success:
        for line in failure_summary(result, instance, settings.home):
            print(line, file=sys.stderr)
    print(f"run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
    return 0 if result.success else 1


def _train(keys: Sequence[str], run_config: dict | None, verbose: bool) -> int:
    """Train the model assets `keys` as one run; print each one's headline figures."""
    from featuregen_assets.assets.models import aligned_text_encoder, decoder_model
    from featuregen_assets.launch.runs import dagster_instance, materialize_unpartitioned

    headlines = {
        "aligned_text_encoder": aligned_text_encoder.HEADLINE,
        "decoder_model": decoder_model.HEADLINE,
    }
    settings = cli_settings()
    with dagster_instance(settings) as instance:
        result = materialize_unpartitioned(
            keys, instance=instance, run_config=run_config, verbose=verbose, settings=settings
        )
        for key in keys:
            for event in result.asset_materializations_for_node(key):
                shown = ", ".join(
                    f"{name} {event.metadata[name].value:.3g}"
                    for name in headlines[key]
                    if name in event.metadata
                )
                print(f"{key} {event.metadata['version'].value}: {shown}")
        return _report(result, instance, settings)


def _cmd_run(args: argparse.Namespace) -> int:
    from featuregen_assets.jobs import MODEL_ASSETS
    from featuregen_assets.launch.executors import ExecutorUnavailable
    from featuregen_assets.launch.runs import dagster_instance, run_category

    models = [key for key in args.select or () if key in MODEL_ASSETS]
    per_category = [key for key in args.select or () if key not in MODEL_ASSETS]
    if args.category is None:
        if per_category or not models:
            args.usage("--category is required (but for the trained models)")
        return _train(models, None, args.verbose)
    require_valid_category(args.category)
    if models and not per_category:
        args.usage(f"{', '.join(models)} train on every category: leave out --category")
    download = {
        name: value
        for name, value in (
            ("force", args.force_download or None),
            ("url_col", args.url_col),
            ("caption_col", args.caption_col),
        )
        if value is not None
    }
    run_config = {"ops": {"raw_images": {"config": download}}} if download else None
    settings = cli_settings()
    with dagster_instance(settings) as instance:
        with errors_as_lines(
            LookupError, ValueError, ExecutorUnavailable, ConnectionError, status=2
        ):
            result = run_category(
                args.category,
                select=per_category or None,
                instance=instance,
                run_config=run_config,
                verbose=args.verbose,
                settings=settings,
            )
        status = _report(result, instance, settings)
    if status or not models:
        return status
    return _train(models, None, args.verbose)


def _cmd_train(args: argparse.Namespace) -> int:
    key = _TRAINED[args.model]
    config = {
        name: getattr(args, name)
        for name in (
            *_TEXT_ENCODER_ONLY,
            "epochs",
            "batch_size",
            "lr",
            "max_steps",
            "seed",
            "embedding_model",
        )
        if getattr(args, name) is not None
    }
    misplaced = [
        name for name in _TEXT_ENCODER_ONLY if name in config and args.model != "text-encoder"
    ]
    if misplaced:
        options = ", ".join("--" + name.replace("_", "-") for name in misplaced)
        args.usage(f"{options}: only for featuregen train text-encoder")
    return _train([key], {"ops": {key: {"config": config}}}, args.verbose)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add `run`, `train` to the `featuregen` commands."""
    run = add_command(
        commands,
        "run",
        _cmd_run,
        help="Run a category's pipeline on its link file (adds the partition if new).",
        description="Run raw_images → image_prompts → prompt_embeddings, image_embeddings for one"
        " category's link file in FEATUREGEN_LINKS_DIR; exits non-zero when the run fails.",
    )
    run.add_argument(
        "--category", help=f"Category slug: its link file is one of {LINK_FILE_NAMES}."
    )
    run.add_argument(
        "--select",
        nargs="+",
        metavar="ASSET",
        choices=ASSETS,
        help=f"Only these assets ({', '.join(ASSETS)}); the trained models need no --category"
        " (they train on every category, after the category's run when given with its assets).",
    )
    run.add_argument(
        "--force-download", action="store_true", help="Download links already ok again."
    )
    run.add_argument("--url-col", help=f"{TABLE_FORMATS} link files: the URL column (default url).")
    run.add_argument(
        "--caption-col",
        help=f"{TABLE_FORMATS} link files: the caption column (default caption; optional).",
    )
    run.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)

    train = add_command(
        commands,
        "train",
        _cmd_train,
        help="Train the text encoder or the decoder on every category (a Dagster run).",
        description="Train aligned_text_encoder (text-encoder) or decoder_model (decoder) on the"
        " vectors of every stored category, as a run on the instance in FEATUREGEN_HOME/dagster;"
        " one line per epoch (loss, held-out figure, time left), then the held-out figures."
        " Unset options take the training's defaults.",
    )
    train.add_argument("model", choices=list(_TRAINED))
    train.add_argument(
        "--recipe",
        choices=["lit", "talk2dino", "projection"],
        help="text-encoder: lit (train the tower), talk2dino (frozen tower + MLP),"
        " projection (frozen tower + linear).",
    )
    train.add_argument(
        "--prompt-source",
        choices=["generated", "link_caption", "both"],
        help="text-encoder: which texts to train on (default both).",
    )
    train.add_argument("--epochs", type=positive(int), help="Passes over the training images.")
    train.add_argument("--batch-size", type=positive(int), help="Rows per optimiser step.")
    train.add_argument("--lr", type=positive(float), help="Peak learning rate.")
    train.add_argument("--max-steps", type=positive(int), help="Stop after this many steps.")
    train.add_argument("--seed", type=int, help="Seed of the initialisation and the order.")
    train.add_argument(
        "--embedding-model", help="The stored vectors to train against (default: the most stored)."
    )
    train.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
