"""`featuregen`: run category pipelines, the offline demo, search, and manage the database."""

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from featuregen_assets.core.research.variant_names import DEFAULT_VARIANTS, VARIANTS, parse_variants
from featuregen_assets.core.search.modes import mode_names
from featuregen_assets.serve.main import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from featuregen_assets.settings import Settings

# What the CLI changes from the settings' defaults; a FEATUREGEN_* variable set still wins.
CLI_DEFAULTS = {"FEATUREGEN_PROGRESS": "bar"}
DEMO_DEFAULTS = {**CLI_DEFAULTS, "FEATUREGEN_MODELS": "tiny"}


class _BadSetting(ValueError):
    """A variable the settings refuse: one line and exit status 2 (`main`)."""


def _settings(defaults: Mapping[str, str] = CLI_DEFAULTS) -> "Settings":
    """The settings of this command: FEATUREGEN_* variables over `defaults`."""
    from featuregen_assets.settings import Settings

    try:
        return Settings.from_env({**defaults, **os.environ})
    except ValueError as error:
        raise _BadSetting(str(error)) from None


def _database_url(settings: "Settings") -> str:
    """The database of `settings`, with the schema migrated (as the Postgres resource does)."""
    from featuregen_assets.core.store import db

    return db.migrated_url(settings.database_url, settings.home)


def _unknown_category(conn, category: str) -> str | None:
    """The error line for a category with no stored image (listing those that have), or None."""
    from featuregen_assets.core.search.hits import known_categories

    known = known_categories(conn)
    if category in known:
        return None
    return f"error: unknown category {category!r}; known: {', '.join(known) or 'none'}"


def _figures(metadata: dict) -> str:
    """The numbers among a check's metadata, as `name value, ...`."""
    return ", ".join(
        f"{name} {entry.value:.3g}"
        for name, entry in metadata.items()
        if isinstance(entry.value, int | float)
    )


def _report(result, instance, settings: "Settings") -> int:
    """Print how a launched run went (failed checks, a failure summary); its exit status."""
    from featuregen_assets.run_console import failure_summary

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
    from featuregen_assets.runs import dagster_instance, materialize_unpartitioned

    headlines = {
        "aligned_text_encoder": aligned_text_encoder.HEADLINE,
        "decoder_model": decoder_model.HEADLINE,
    }
    settings = _settings()
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
    from featuregen_assets.core.ingest.links import category_error
    from featuregen_assets.executors import ExecutorUnavailable
    from featuregen_assets.jobs import MODEL_ASSETS
    from featuregen_assets.runs import dagster_instance, run_category

    models = [key for key in args.select or () if key in MODEL_ASSETS]
    per_category = [key for key in args.select or () if key not in MODEL_ASSETS]
    if args.category is None:
        if per_category or not models:
            print("error: --category is required (but for the trained models)", file=sys.stderr)
            return 2
        return _train(models, None, args.verbose)
    reason = category_error(args.category)
    if reason:
        print(f"error: bad category {args.category!r}: {reason}", file=sys.stderr)
        return 2
    if models and not per_category:
        print(
            f"error: {', '.join(models)} train on every category: leave out --category",
            file=sys.stderr,
        )
        return 2
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
    settings = _settings()
    with dagster_instance(settings) as instance:
        try:
            result = run_category(
                args.category,
                select=per_category or None,
                instance=instance,
                run_config=run_config,
                verbose=args.verbose,
                settings=settings,
            )
        except (LookupError, ValueError, ExecutorUnavailable, ConnectionError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        status = _report(result, instance, settings)
    if status or not models:
        return status
    return _train(models, None, args.verbose)


_TRAINED = {"text-encoder": "aligned_text_encoder", "decoder": "decoder_model"}
_TEXT_ENCODER_ONLY = ("recipe", "prompt_source")


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
        print(f"error: {options}: only for featuregen train text-encoder", file=sys.stderr)
        return 2
    return _train([key], {"ops": {key: {"config": config}}}, args.verbose)


def _cmd_demo(args: argparse.Namespace) -> int:
    from featuregen_assets.demo.run import SCALES, run_demo

    return run_demo(
        _settings(DEMO_DEFAULTS),
        per_category=args.per_category or SCALES[args.scale],
        categories=args.categories,
        seed=args.seed,
    )


def _cmd_models(args: argparse.Namespace) -> int:
    if args.action == "build-tiny":
        from featuregen_assets.demo.tiny_models import ensure_tiny_models

        root = ensure_tiny_models(_settings().models_root())
        print(f"tiny models in {root / 'tiny'}")
        return 0
    from featuregen_assets.core.store import db
    from featuregen_assets.core.store.registry import models_of, promote

    settings = _settings()
    with db.connection(_database_url(settings)) as conn:
        if args.action == "promote":
            if not args.version:
                args.usage("promote needs the version: featuregen models promote VERSION")
            try:
                record = promote(conn, args.name, args.version)
            except LookupError as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
            print(f"{record.name} {record.version} is served now (search, serve, the API)")
            return 0
        for record, served in models_of(conn, args.name):
            figure = record.metrics.get("validation_recall@5")
            shown = "" if figure is None else f"  validation recall@5 {float(figure):.3f}"
            print(f"{'*' if served else ' '} {record.version}  {record.embedding_model}{shown}")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from featuregen_assets.core.runtime import paths
    from featuregen_assets.core.runtime.checkpoint import step_checkpoints
    from featuregen_assets.core.store import db
    from featuregen_assets.core.store.summary import format_table, summarize

    settings = _settings()
    with db.connection(_database_url(settings)) as conn:
        print(format_table(summarize(conn)))
    if waiting := step_checkpoints(paths.checkpoints_dir(settings.home)):
        print(
            "\ncheckpointed rows waiting for their step's next run (FEATUREGEN_HOME/checkpoints):"
        )
        for c in waiting:
            print(f"  {c.asset} {c.partition} {c.model}: {c.chunks} chunks, {c.bytes / 1e6:.1f} MB")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from pathlib import Path

    from featuregen_assets.core.search.engine import SearchQuery
    from featuregen_assets.core.store import db
    from featuregen_assets.core.vision.hub import ModelUnavailable
    from featuregen_assets.core.vision.model_profiles import TinyModelMissing
    from featuregen_assets.serve.discovery import ServerRefused
    from featuregen_assets.serve.main import build_searcher

    if (args.query is None) == (args.image is None):
        args.usage("give a text query or --image PATH (one of them)")
    if args.query is not None:
        try:
            args.query.encode("utf-8")
        except UnicodeEncodeError:
            args.usage("the query is not valid text (its bytes do not decode as UTF-8)")
        if not args.query.strip():
            args.usage("the query is empty: give some words")
    settings = _settings()
    try:
        served = _served_answer(args, settings)
    except ServerRefused as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if served is not None:
        return _print_answer(served, args.json, settings)
    with db.connection(_database_url(settings)) as conn:
        if args.category is not None and (error := _unknown_category(conn, args.category)):
            print(error, file=sys.stderr)
            return 2
        try:
            image = Path(args.image).read_bytes() if args.image else None
        except OSError as error:
            args.usage(f"cannot read --image: {error}")
        query = SearchQuery(
            text=args.query,
            mode=args.mode,
            image=image,
            category=args.category,
            k=args.k,
            version=args.version,
        )
        try:
            answer = build_searcher(settings).search(conn, query)
        except (LookupError, ValueError, ModelUnavailable, TinyModelMissing) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return _print_answer(answer.as_dict(), args.json, settings)


def _served_answer(args: argparse.Namespace, settings: "Settings") -> dict | None:
    """A text query's answer from the `featuregen serve` running on this home (which holds
    the encoder loaded), or None: no server, no answer, or no hit in a category it names."""
    from featuregen_assets.serve.discovery import running_server, search_through

    if args.query is None or (url := running_server(settings.home)) is None:
        return None
    params = {"q": args.query, "k": args.k}
    for name in ("mode", "category", "version"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    answer = search_through(url, params, settings.serve_token)
    if answer is None or (args.category and not answer["hits"]):  # unknown category? ask here
        return None
    print(f"(answered by featuregen serve at {url})", file=sys.stderr)
    return answer


def _print_answer(answer: dict, as_json: bool, settings: "Settings") -> int:
    """An answer's hits (`SearchAnswer.as_dict`), as JSON or one block a hit."""
    import json

    if as_json:
        print(json.dumps(answer["hits"], indent=2))
        return 0
    score = {"cosine": "cosine similarity (-1…1)", "keyword": "keyword rank (0…1)"}
    used = ", ".join(f"{k} {v}" for k, v in answer["model"].items() if v)
    print(f"{answer['mode']} search, {answer['total']} images ranked; models: {used or 'none'}")
    print(f"rank  score: {score.get(answer['score_kind'], 'reciprocal-rank fusion')}")
    for hit in answer["hits"]:
        print(
            f"{hit['rank']:>4}  {hit['score']:.3f}  {hit['category']:<14}"
            f" {hit['image_id'][:16]}  {hit['url']}"
        )
        # The tiny captioner has random weights: its prompts are noise, and say so.
        prompt = "prompt (random-weight captioner)" if hit["prompt_random"] else "prompt"
        generated = hit["prompt"] if hit["prompt_source"] == "generated" else None
        for label, text in ((prompt, generated), ("caption", hit["caption"])):
            if text:
                print(f"      {label}: {text}")
        if len(hit["why"]) > 1:
            why = "; ".join(f"{w['list']} #{w['rank']} ({w['score']:.3f})" for w in hit["why"])
            print(f"      why: {why}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from featuregen_assets.serve.main import ServeRefused, check_exposure, serve

    settings = _settings()
    try:
        warning = check_exposure(args.host, settings.serve_token, args.no_token)
    except ServeRefused as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if warning:
        print(warning, file=sys.stderr)
    serve(settings, _database_url(settings), args.host, args.port, not args.fp32)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from featuregen_assets.core.ingest.caption_datasets import read_dataset, select, write_harness
    from featuregen_assets.core.ingest.links import category_error

    if reason := category_error(args.category):
        print(f"error: bad category {args.category!r}: {reason}", file=sys.stderr)
        return 2
    try:
        images = select(read_dataset(Path(args.annotations), args.format), args.split, args.limit)
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"error: cannot read {args.annotations} as {args.format}: {error}", file=sys.stderr)
        return 2
    if not images:
        print(
            f"error: no captioned image in {args.annotations} (split {args.split})", file=sys.stderr
        )
        return 1
    settings = _settings()
    query_file = settings.home / "import" / f"{args.category}.queries.jsonl"
    link_file, query_file, missing = write_harness(
        images, Path(args.images), args.base_url, args.category, settings.links_dir, query_file
    )
    if missing:
        print(f"warning: {len(missing)} image files not found, e.g. {missing[0]}", file=sys.stderr)
    print(f"{len(images) - len(missing)} images: links {link_file}, queries {query_file}")
    print(
        f"next: serve {args.images} at {args.base_url}, then featuregen run --category"
        f" {args.category}; featuregen train text-encoder; featuregen train decoder;"
        f" featuregen report --queries"
        f" {query_file}"
    )
    return 0 if len(images) > len(missing) else 1


def _variants(text: str) -> tuple[str, ...]:
    """--variants: known names, comma-separated."""
    try:
        return parse_variants(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _cmd_report(args: argparse.Namespace) -> int:
    from featuregen_assets.core.research.report import summary_lines
    from featuregen_assets.run_console import failure_summary
    from featuregen_assets.runs import dagster_instance, materialize_report

    settings = _settings()
    if args.protocol:
        from featuregen_assets.protocol_report import run_protocol_report

        report = run_protocol_report(args, settings)
        print("\n".join(summary_lines(report)))
        print(f"\nfull report: {report} (and report.json beside it)")
        return 0
    with dagster_instance(settings) as instance:
        result, report = materialize_report(
            seeds=args.seeds,
            query_file=args.queries,
            instance=instance,
            settings=settings,
            variants=args.variants,
            variant_epochs=args.variant_epochs,
            decoder_epochs=args.decoder_epochs,
        )
        if report is None:
            for line in failure_summary(result, instance, settings.home):
                print(line, file=sys.stderr)
            return 1
    print("\n".join(summary_lines(report)))
    print(f"\nfull report: {report} (and report.json beside it)")
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    from featuregen_assets import KNOWN_WARNINGS_ENV
    from featuregen_assets.core.runtime.processes import run_forwarding_signals
    from featuregen_assets.runs import dagster_dev_command, prepare_dagster_home

    home = prepare_dagster_home(_settings())
    command = dagster_dev_command(args.extra, home)
    inherited = os.environ.get("PYTHONWARNINGS")
    warnings = f"{inherited},{KNOWN_WARNINGS_ENV}" if inherited else KNOWN_WARNINGS_ENV
    print(f"DAGSTER_HOME={home}", file=sys.stderr)
    return run_forwarding_signals(command, {**os.environ, "PYTHONWARNINGS": warnings})


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from featuregen_assets.core.store import db
    from featuregen_assets.core.store.export import export_vectors
    from featuregen_assets.core.store.registry import most_embedded_model

    settings = _settings()
    out = Path(args.out) if args.out else settings.home / "exports"
    with db.connection(_database_url(settings)) as conn:
        model = args.model or most_embedded_model(conn)
        if args.category and (error := _unknown_category(conn, args.category)):
            print(error, file=sys.stderr)
            return 2
        conn.commit()  # the export reads in a transaction of its own
        if model is None:
            print("error: no image embeddings stored yet", file=sys.stderr)
            return 1
        try:
            done = export_vectors(
                conn, model, out, args.category or "all", args.format, args.category
            )
        except LookupError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    print(f"{done.rows} rows of {model} (dimension {done.dim}):")
    for path in done.files:
        print(f"  {path}")
    return 0


def _cmd_db(args: argparse.Namespace) -> int:
    from featuregen_assets.core.store import db

    settings = _settings()
    if args.action == "url":
        print(_database_url(settings))
    elif args.action == "stop":
        print("stopped" if db.stop_embedded_server(settings.home) else "not running")
    elif args.action == "compact":
        from featuregen_assets.core.store.maintenance import move_vectors_into_rows

        before, after = move_vectors_into_rows(_database_url(settings))
        print(f"vectors stored out of line: {before / 1e6:.1f} MB before, {after / 1e6:.1f} MB now")
    elif args.action == "verify":
        return _verify_store(settings, repair=args.repair)
    return 0


def _verify_store(settings: "Settings", *, repair: bool) -> int:
    """`featuregen db verify`: print what the store check finds; 1 when anything is left wrong."""
    from featuregen_assets.core.ingest.image_store import ImageStore
    from featuregen_assets.core.ingest.store_check import verify_store
    from featuregen_assets.core.runtime import paths
    from featuregen_assets.core.store import db

    with db.connection(_database_url(settings)) as conn:
        report = verify_store(conn, ImageStore(paths.images_dir(settings.home)), repair=repair)
    for line in report.lines():
        print(line)
    left = report.problems - len(report.repaired)
    return 0 if left <= 0 else 1


def _result_count(text: str) -> int:
    """-k: a whole number of results, 1 to MAX_K."""
    from featuregen_assets.core.search.engine import MAX_K

    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_K:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from 1 to {MAX_K:,}")
    return int(text)


ASSETS = (
    "raw_images",
    "image_prompts",
    "image_embeddings",
    "prompt_embeddings",
    *_TRAINED.values(),
)
VERBOSE_HELP = "Print Dagster's whole run log (default: the steps' own lines, a failure summary)."


def _positive(kind: type):
    """An argparse type: a number of `kind` above zero."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0: {text}")
        return value

    return parse


def _demo_category(name: str) -> str:
    """An argparse type: one of the demo's categories."""
    from featuregen_assets.demo.scenes import CATEGORIES

    if name not in CATEGORIES:
        raise argparse.ArgumentTypeError(
            f"unknown demo category {name!r}: choose from {', '.join(CATEGORIES)}"
        )
    return name


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = _Parser(
        prog="featuregen",
        description="Image links → DINOv2 feature store in PostgreSQL + pgvector, via Dagster.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="Run a category's pipeline on its link file (adds the partition if new).",
        description="Run raw_images → image_prompts → prompt_embeddings, image_embeddings for one"
        " category's link file in FEATUREGEN_LINKS_DIR; exits non-zero when the run fails.",
    )
    run.add_argument(
        "--category", help="Category slug: <category>.txt (or .csv, .tsv, .parquet, .jsonl)"
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
    run.add_argument(
        "--url-col", help="CSV/TSV/Parquet/JSONL link files: the URL column (default url)."
    )
    run.add_argument(
        "--caption-col",
        help="CSV/TSV/Parquet/JSONL link files: the caption column (default caption; optional).",
    )
    run.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    run.set_defaults(func=_cmd_run)

    train = commands.add_parser(
        "train",
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
    train.add_argument("--epochs", type=_positive(int), help="Passes over the training images.")
    train.add_argument("--batch-size", type=_positive(int), help="Rows per optimiser step.")
    train.add_argument("--lr", type=_positive(float), help="Peak learning rate.")
    train.add_argument("--max-steps", type=_positive(int), help="Stop after this many steps.")
    train.add_argument("--seed", type=int, help="Seed of the initialisation and the order.")
    train.add_argument(
        "--embedding-model", help="The stored vectors to train against (default: the most stored)."
    )
    train.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    train.set_defaults(func=_cmd_train)

    demo = commands.add_parser(
        "demo",
        help="Offline demo: synthetic images served on 127.0.0.1, every pipeline run.",
        description="Generate synthetic scenes, serve them on 127.0.0.1, write link files, run"
        " every category's pipeline with the tiny models and print what the tables hold.",
    )
    demo.add_argument(
        "--per-category", type=int, help="Images per category (default: set by --scale)."
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
    demo.set_defaults(func=_cmd_demo)

    models = commands.add_parser(
        "models",
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
    models.set_defaults(func=_cmd_models, usage=models.error)

    summary = commands.add_parser(
        "summary",
        help="Per-category counts read from the tables.",
        description="Links, downloads, failures by reason and rows per table, per category.",
    )
    summary.set_defaults(func=_cmd_summary)

    search = commands.add_parser(
        "search",
        help="Search the images by words (or --image: more like this image).",
        description="A text query in one of the modes: caption (sentence vectors of the"
        " images' captions), image (the aligned text encoder over the DINOv2 vectors), keyword"
        " (PostgreSQL full text over captions and prompts) or hybrid (every available list,"
        " fused by reciprocal rank); with --image, the image's own DINOv2 vector. Scores:"
        " cosine similarity (-1…1) for caption and image, PostgreSQL's rank (0…1) for"
        " keyword, reciprocal-rank fusion for hybrid. Prints the mode, how many images it"
        " ranks and the model versions used.",
    )
    search.add_argument("query", nargs="?", help="What to look for, in words.")
    search.add_argument("--image", metavar="PATH", help="Find images like this image file.")
    search.add_argument(
        "--mode",
        choices=mode_names(),
        help="caption: the images' captions (semantic); image: the image vectors through the"
        " aligned text encoder (alias text); keyword: full text; hybrid: all fused. Default:"
        " FEATUREGEN_SEARCH_MODE, else the mode the research report measures best.",
    )
    search.add_argument(
        "--version", help="A registered text encoder version (default: the promoted one)."
    )
    search.add_argument("--category", help="Only images of this category.")
    search.add_argument(
        "-k", type=_result_count, default=10, help="How many results, 1 to 1,000 (default 10)."
    )
    search.add_argument("--json", action="store_true", help="Print the hits as JSON.")
    search.set_defaults(func=_cmd_search, usage=search.error)

    serve = commands.add_parser(
        "serve",
        help="The search web page and JSON API (FastAPI on uvicorn).",
        description="Serve the search page at / and the API under /api/ (OpenAPI at /docs),"
        " with stored images and thumbnails by id. Binds loopback unless --host says otherwise.",
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"Default {DEFAULT_HOST}.")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"Default {DEFAULT_PORT}.")
    serve.add_argument(
        "--fp32",
        action="store_true",
        help="Run the text encoder in float32 (default: its linear layers in int8, about 3x"
        " faster on a CPU; query vectors have cosine >= 0.998 to float32's).",
    )
    serve.add_argument(
        "--no-token",
        action="store_true",
        help="Serve beyond loopback without FEATUREGEN_SERVE_TOKEN (refused otherwise): anyone"
        " who reaches the port can search and read every stored image.",
    )
    serve.set_defaults(func=_cmd_serve)

    report = commands.add_parser(
        "report",
        help="The research report: every method beside fair baselines, with 95%% intervals.",
        description="Materialise research_report on the newest text encoder and decoder: the"
        " same test split for every method (chance, category oracle, keyword search over the"
        " captions, caption embeddings, nearest training captions, the untrained and trained"
        " encoder; decoder vs mean, category-mean and nearest-neighbour images). Writes"
        " report.md and report.json under FEATUREGEN_HOME/artifacts/research_report/.",
    )
    report.add_argument(
        "--seeds", type=int, default=1, help="Text-encoder trainings to average (default 1)."
    )
    report.add_argument(
        "--queries", metavar="FILE", help="JSON-lines query sets (default: the demo's, if any)."
    )
    report.add_argument(
        "--variants",
        type=_variants,
        metavar="LIST",
        help="Learned variants trained on the same split, comma-separated, '' for none:"
        f" {', '.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)}).",
    )
    report.add_argument(
        "--variant-epochs",
        type=_positive(int),
        metavar="N",
        help="Epochs of each variant's training (default: the text encoder's; with fewer, add"
        " the variant lit, the encoder's recipe at N epochs, as their like-for-like reference).",
    )
    report.add_argument(
        "--decoder-epochs",
        type=_positive(int),
        metavar="N",
        help="Epochs of the decoders the report trains side by side: from the stored vectors,"
        " from the 16 px original (their positive control) and from patch tokens (default: the"
        " registered decoder's).",
    )
    report.add_argument(
        "--protocol",
        choices=["coco-karpathy", "flickr30k-karpathy", "ade20k-linear"],
        help="A standard protocol instead of the store's report (real weights). Karpathy's:"
        " the split file (--dataset) and its images (--images); trains on train + restval with"
        " all five captions, keeps the best val epoch, scores the test images text -> image"
        " and image -> text (recall@1/5/10). ade20k-linear: --dataset is ADEChallengeData2016;"
        " a linear head on the patch tokens, every training image, mIoU over 150 classes on"
        " every validation image.",
    )
    report.add_argument(
        "--dataset",
        type=Path,
        metavar="PATH",
        help="dataset_coco.json / dataset_flickr30k.json, or the ADEChallengeData2016 folder.",
    )
    report.add_argument("--images", type=Path, metavar="DIR", help="the folder its paths are in")
    report.add_argument(
        "--test-size",
        type=_positive(int),
        metavar="N",
        help="Score folds of N test images, averaged (COCO's 1k protocol: 1000; default: all).",
    )
    report.add_argument(
        "--batch-size",
        type=_positive(int),
        metavar="N",
        help="Contrastive batch of the protocol's text encoder (default: its config's, 32; on a"
        " GPU use 1024 or more).",
    )
    report.add_argument(
        "--epochs",
        type=_positive(int),
        metavar="N",
        help="The protocol's training epochs (the text encoder's, or ADE20K's linear head's: 10).",
    )
    report.set_defaults(func=_cmd_report)

    importer = commands.add_parser(
        "import",
        help="A caption dataset (COCO, Karpathy split, Flickr30k) as a link file and queries.",
        description="Write FEATUREGEN_LINKS_DIR/<category>.txt (one line per image of the split:"
        " <base-url>/<path> TAB its first caption) and FEATUREGEN_HOME/import/<category>"
        ".queries.jsonl (every caption a query for its image) from a local dataset folder.",
    )
    importer.add_argument("format", choices=["coco", "karpathy", "flickr30k-token"])
    importer.add_argument("annotations", help="captions_*.json, dataset_*.json or *.token")
    importer.add_argument("--images", required=True, help="Folder the image paths are under.")
    importer.add_argument(
        "--base-url", required=True, help="Where that folder is served (http://127.0.0.1:PORT)."
    )
    importer.add_argument("--category", required=True, help="Category (link file) to write.")
    importer.add_argument("--split", help="Karpathy split to keep (train, restval, val, test).")
    importer.add_argument("--limit", type=int, help="At most this many images.")
    importer.set_defaults(func=_cmd_import)

    dev = commands.add_parser(
        "dev",
        help="`dagster dev` on the instance in FEATUREGEN_HOME/dagster (UI + daemon).",
        description="Prepare DAGSTER_HOME (default FEATUREGEN_HOME/dagster, GPU pool limited to"
        " one step at a time) and run `dagster dev` on the code location `featuregen`, as"
        " workspace.yaml names it (so sensor state and cursors are the same whichever way the UI"
        " starts). Every other argument goes to dagster dev unchanged (e.g. -h 127.0.0.1 -p"
        " 3001; -w/-m/-f choose what to load instead); `dagster dev --help` lists them.",
        add_help=False,
        allow_abbrev=False,
    )
    dev.add_argument("--help", action="help", help="Show this message and exit.")
    dev.set_defaults(func=_cmd_dev)

    export = commands.add_parser(
        "export",
        help="Write image ids, metadata and vectors to Parquet (or NumPy) files.",
        description="Write one row per downloaded image with a vector: image_id, category, url,"
        " caption, prompt and the vector, streamed in batches (bounded memory). parquet:"
        " <out>/<name>.parquet with the vector as a list of float32; npy: the vectors as"
        " <out>/<name>.npy (float32, rows × dimension) and the rest, in the same order, in"
        " <out>/<name>.parquet. <name> is the category, or all.",
    )
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--category", help="Only this category.")
    which.add_argument("--all", action="store_true", help="Every category.")
    export.add_argument("--format", choices=["parquet", "npy"], default="parquet")
    export.add_argument(
        "--out", metavar="DIR", help="Output directory (default: FEATUREGEN_HOME/exports)."
    )
    export.add_argument(
        "--model", help="The embedding model whose vectors to export (default: the most stored)."
    )
    export.set_defaults(func=_cmd_export)

    database = commands.add_parser(
        "db",
        help="The database: print its URL (for psql), stop the embedded server, compact, verify.",
        description="`featuregen db url` starts the embedded server if needed and prints a URL"
        " for psql; `featuregen db stop` stops it; `featuregen db compact` moves vectors stored"
        " before migration 3 into their rows (VACUUM FULL: locks image_embeddings and rebuilds"
        " its indexes); `featuregen db verify [--repair]` checks every stored image file against"
        " the tables (sha256, orphans, temporary files, row keys).",
    )
    database.add_argument("action", choices=["url", "stop", "compact", "verify"])
    database.add_argument(
        "--repair",
        action="store_true",
        help="verify: mark the links of damaged files for download again (the next run of"
        " their category fetches them), delete orphan files older than an hour and temporary"
        " files of dead writers.",
    )
    database.set_defaults(func=_cmd_db)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `featuregen` command."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # No model-loading bars (read when huggingface_hub is imported; no transformers import here).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "dev":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return args.func(args)
    except _BadSetting as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
