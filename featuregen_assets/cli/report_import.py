"""`featuregen report` (the research report, or a standard protocol) and `featuregen import`
(a caption dataset as a link file and queries)."""

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from featuregen_assets.cli.common import (
    CommandError,
    add_command,
    cli_settings,
    positive,
    require_valid_category,
)
from featuregen_assets.core.ingest.caption_datasets import FORMATS
from featuregen_assets.demo.report_budget import (
    DEMO_DECODER_EPOCHS,
    DEMO_REPORT_BUDGET,
    DEMO_VARIANT_EPOCHS,
    DEMO_VARIANTS,
)
from featuregen_assets.research.variant_names import DEFAULT_VARIANTS, VARIANTS, parse_variants

if TYPE_CHECKING:
    from featuregen_assets.settings import Settings


def _variants(text: str) -> tuple[str, ...]:
    """--variants: known names, comma-separated."""
    try:
        return parse_variants(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _report_inputs(args: argparse.Namespace, home: Path) -> dict[str, str]:
    """The report's input paths: those given, else the demo's under `home` where it ran (said
    in one line)."""
    given = {"query_file": args.queries, "probe_masks": args.masks, "probe_records": args.truth}
    if any(given.values()):
        return {key: str(Path(path).resolve()) for key, path in given.items() if path}
    from featuregen_assets.demo.run import report_inputs

    demo = report_inputs(home)
    if demo:
        print(
            f"inputs: the demo's under {home / 'demo'} ({', '.join(demo)});"
            " --queries/--masks/--truth choose others"
        )
    return demo


def _report_budget(args: argparse.Namespace, home: Path) -> dict:
    """The variants and epochs the report trains: those given; on the demo's inputs the demo's
    for the rest (said in one line), so that a report after the demo costs what the demo's
    did; else the asset's defaults (each variant at the encoder's epochs, like for like)."""
    from featuregen_assets.demo.run import report_inputs

    given = {
        "variants": args.variants,
        "variant_epochs": args.variant_epochs,
        "decoder_epochs": args.decoder_epochs,
    }
    chosen = {key: value for key, value in given.items() if value is not None}
    if any((args.queries, args.masks, args.truth)) or not report_inputs(home):
        return chosen
    demo = {key: value for key, value in DEMO_REPORT_BUDGET.items() if key not in chosen}
    if demo:
        said = {
            "variants": f"variants {','.join(demo.get('variants', ()))}",
            "variant_epochs": f"{demo.get('variant_epochs')} epochs each",
            "decoder_epochs": f"decoders {demo.get('decoder_epochs')} epochs",
        }
        print(
            f"budget: the demo's ({'; '.join(said[key] for key in demo)});"
            " --variants/--variant-epochs/--decoder-epochs choose others"
        )
    return {**demo, **chosen}


def _cmd_report(args: argparse.Namespace) -> int:
    from featuregen_assets.research.report import summary_lines

    settings = cli_settings()
    if args.protocol:
        from featuregen_assets.protocol_report import run_protocol_report

        report = run_protocol_report(args, settings)
    elif (report := _store_report(args, settings)) is None:
        return 1
    print("\n".join(summary_lines(report)))
    print(f"\nfull report: {report} (and report.json beside it)")
    return 0


def _store_report(args: argparse.Namespace, settings: "Settings") -> Path | None:
    """Materialise research_report on the store; its report.md, or None when the run failed
    (its failure summary printed)."""
    from featuregen_assets.launch.run_console import failure_summary
    from featuregen_assets.launch.runs import dagster_instance, materialize_report

    with dagster_instance(settings) as instance:
        result, report = materialize_report(
            _report_inputs(args, settings.home),
            seeds=args.seeds,
            instance=instance,
            settings=settings,
            **_report_budget(args, settings.home),
        )
        if report is None:
            for line in failure_summary(result, instance, settings.home):
                print(line, file=sys.stderr)
    return report


def _cmd_import(args: argparse.Namespace) -> int:
    from featuregen_assets.core.ingest.caption_datasets import read_dataset, select, write_harness

    require_valid_category(args.category)
    try:
        images = select(read_dataset(Path(args.annotations), args.format), args.split, args.limit)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CommandError(
            f"cannot read {args.annotations} as {args.format}: {error}", status=2
        ) from None
    if not images:
        raise CommandError(f"no captioned image in {args.annotations} (split {args.split})")
    settings = cli_settings()
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


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add `report`, `import` to the `featuregen` commands."""
    report = add_command(
        commands,
        "report",
        _cmd_report,
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
        "--queries",
        metavar="FILE",
        help="JSON-lines query sets with their truth (default: the demo's when it ran and no"
        " input is given; else template queries from the test captions).",
    )
    report.add_argument(
        "--masks",
        metavar="DIR",
        help="Label masks for the dense probes, <image URL file stem>.png (default: as --queries;"
        " else no probes).",
    )
    report.add_argument(
        "--truth",
        metavar="DIR",
        help="Scene records, <image URL file stem>.json: the probes' boxes, truth read-outs and"
        " attribute probes (default: as --queries; else none).",
    )
    report.add_argument(
        "--variants",
        type=_variants,
        metavar="LIST",
        help="Learned variants trained on the same split, comma-separated, '' for none:"
        f" {', '.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)}; on the demo's inputs"
        f" the demo's, {','.join(DEMO_VARIANTS)}).",
    )
    report.add_argument(
        "--variant-epochs",
        type=positive(int),
        metavar="N",
        help="Epochs of each variant's training (default: the text encoder's, so that each is"
        " compared with the encoder at its budget; on the demo's inputs the demo's"
        f" {DEMO_VARIANT_EPOCHS}). With fewer than the encoder's, add the variant lit, the"
        " encoder's recipe at N epochs, as their like-for-like reference.",
    )
    report.add_argument(
        "--decoder-epochs",
        type=positive(int),
        metavar="N",
        help="Epochs of the decoders the report trains side by side: from the stored vectors,"
        " from the 16 px original (their positive control) and from patch tokens (default: the"
        f" registered decoder's; on the demo's inputs the demo's {DEMO_DECODER_EPOCHS}).",
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
        type=positive(int),
        metavar="N",
        help="Score folds of N test images, averaged (COCO's 1k protocol: 1000; default: all).",
    )
    report.add_argument(
        "--batch-size",
        type=positive(int),
        metavar="N",
        help="Contrastive batch of the protocol's text encoder (default: its config's, 32; on a"
        " GPU use 1024 or more).",
    )
    report.add_argument(
        "--epochs",
        type=positive(int),
        metavar="N",
        help="The protocol's training epochs (the text encoder's, or ADE20K's linear head's: 10).",
    )

    importer = add_command(
        commands,
        "import",
        _cmd_import,
        help="A caption dataset (COCO, Karpathy split, Flickr30k) as a link file and queries.",
        description="Write FEATUREGEN_LINKS_DIR/<category>.txt (one line per image of the split:"
        " <base-url>/<path> TAB its first caption) and FEATUREGEN_HOME/import/<category>"
        ".queries.jsonl (every caption a query for its image) from a local dataset folder.",
    )
    importer.add_argument("format", choices=FORMATS)
    importer.add_argument("annotations", help="captions_*.json, dataset_*.json or *.token")
    importer.add_argument("--images", required=True, help="Folder the image paths are under.")
    importer.add_argument(
        "--base-url", required=True, help="Where that folder is served (http://127.0.0.1:PORT)."
    )
    importer.add_argument("--category", required=True, help="Category (link file) to write.")
    importer.add_argument("--split", help="Karpathy split to keep (train, restval, val, test).")
    importer.add_argument("--limit", type=int, help="At most this many images.")
