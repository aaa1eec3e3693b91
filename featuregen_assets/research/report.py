"""report.md and report.json from the measurements: tables, plots, answers from the numbers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from featuregen_assets.core.search.default_mode import SERVED_PREFIX
from featuregen_assets.core.search.modes import KEYWORD
from featuregen_assets.core.training.plots import interval_bars
from featuregen_assets.research.measurements import Measurement
from featuregen_assets.research.paired import TASK as PAIRED
from featuregen_assets.research.variant_names import method_name
from featuregen_assets.research.weights import describe

HEADLINE_SETS = ("template", "paraphrase", "partial_object", "compositional")
VECTOR_ONLY = "searches the image vectors"
KEYWORD_BASELINE = "keyword_fts"
KEYWORD_SERVED = SERVED_PREFIX + KEYWORD
KEYWORD_ROWS_DIFFER = (
    f"`{KEYWORD_BASELINE}` and `{KEYWORD_SERVED}` differ by design: the baseline matches any of"
    " the query's words in an image's texts joined (the random-weight captioner's prompts"
    " too), the service every word in one text at a time (websearch syntax, those prompts"
    " left out)."
)


def find(
    measurements: Sequence[Measurement], query_set: str, metric: str, method_prefix: str
) -> Measurement | None:
    """The first measurement of that query set and metric whose method starts with the prefix."""
    return next(
        (
            m
            for m in measurements
            if m.query_set == query_set
            and m.metric == metric
            and m.method.startswith(method_prefix)
            and m.task != PAIRED
        ),
        None,
    )


def _cell(m: Measurement | None) -> str:
    if m is None:
        return "—"
    if m.ci_low == m.ci_high:
        return f"{m.value:.3f}"
    return f"{m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]"


def retrieval_methods(measurements: Sequence[Measurement]) -> list[str]:
    """Retrieval methods in the order they were measured."""
    return list(dict.fromkeys(m.method for m in measurements if m.task == "retrieval"))


def keyword_rows_note(measurements: Sequence[Measurement]) -> list[str]:
    """Why the two keyword rows disagree, where the report has both (else nothing)."""
    methods = retrieval_methods(measurements)
    both = KEYWORD_SERVED in methods and any(m.startswith(KEYWORD_BASELINE) for m in methods)
    return ["", KEYWORD_ROWS_DIFFER] if both else []


def headline_table(measurements: Sequence[Measurement], metric: str = "recall@5") -> str:
    """Markdown: one row per method, one column per headline query set."""
    sets = [s for s in HEADLINE_SETS if any(m.query_set == s for m in measurements)]
    lines = [
        f"| method | {' | '.join(f'{s} {metric}' for s in sets)} |",
        "|---|" + "---|" * len(sets),
    ]
    for method in retrieval_methods(measurements):
        cells = [_cell(find(measurements, s, metric, method)) for s in sets]
        seeds = next((m.seeds for m in measurements if m.method == method), 1)
        label = method + (f" (mean of {seeds} seeds)" if seeds > 1 else "")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def table(measurements: Sequence[Measurement], query_set: str) -> str:
    """Markdown: every metric of every method for one query set (paired differences apart)."""
    chosen = [m for m in measurements if m.query_set == query_set and m.task != PAIRED]
    metrics = list(dict.fromkeys(m.metric for m in chosen if not m.metric.endswith("_sd_seeds")))
    methods = list(dict.fromkeys(m.method for m in chosen))
    lines = [f"| method | {' | '.join(metrics)} | n |", "|---|" + "---|" * (len(metrics) + 1)]
    for method in methods:
        row = {m.metric: m for m in chosen if m.method == method}
        n = max((m.n for m in row.values()), default=0)
        sd = {k: v for k, v in row.items() if k.endswith("_sd_seeds")}
        cells = []
        for metric in metrics:
            cell = _cell(row.get(metric))
            if f"{metric}_sd_seeds" in sd:
                cell += f" ± {sd[f'{metric}_sd_seeds'].value:.3f} sd"
            cells.append(cell)
        lines.append(f"| {method} | {' | '.join(cells)} | {n} |")
    return "\n".join(lines)


def recall_plot(measurements: Sequence[Measurement], query_set: str) -> Image.Image:
    """Recall@5 bars with 95 % intervals for one query set."""
    chosen = [
        m
        for m in measurements
        if m.query_set == query_set and m.metric == "recall@5" and m.task != PAIRED
    ]
    return interval_bars(
        [m.method for m in chosen],
        [m.value for m in chosen],
        [m.ci_low for m in chosen],
        [m.ci_high for m in chosen],
        f"text -> image recall@5, {query_set} queries (95% intervals)",
    )


def paired_table(measurements: Sequence[Measurement]) -> str:
    """Markdown: every paired difference the answers rest on, one row each."""
    lines = [
        "| query set | A − B (same units) | metric | difference [95 % paired interval] | n |",
        "|---|---|---|---|---|",
    ]
    for m in measurements:
        if m.task == PAIRED:
            lines.append(
                f"| {m.query_set} | {m.method} | {m.metric} | {m.value:+.3f}"
                f" [{m.ci_low:+.3f}, {m.ci_high:+.3f}] | {m.n} |"
            )
    return "\n".join(lines)


def write_report(
    directory: Path,
    measurements: Sequence[Measurement],
    context: dict,
    answers: Sequence[str],
    images: dict[str, Image.Image],
) -> tuple[Path, Path]:
    """report.json (context + one row per measurement), report.md (answers, tables, plots)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        image.save(directory / f"{name}.png")
    (directory / "report.json").write_text(
        json.dumps({**context, "rows": [m.as_dict() for m in measurements]}, indent=1)
    )
    sets = list(dict.fromkeys(m.query_set for m in measurements if m.task != PAIRED))
    md = [
        "# Research report: DINOv2 as a text-to-image search space, and back to images",
        "",
        f"Weights: {describe(context['weights'])}." if context.get("weights") else "",
        f"Embedding model `{context.get('embedding_model')}`; text encoder"
        f" `{context.get('text_encoder')}`; decoder `{context.get('decoder')}`.",
        f"Split ({context.get('split_sizes')}): id-list sha256 {context.get('split_hashes')};"
        f" grouped by {context.get('split_grouping', 'image_id')}; test images with a training"
        f" image's bag of caption words: {context.get('test_images_sharing_training_words')}."
        " Test queries left out because a training text has their bag of words:"
        f" {context.get('queries_dropped_as_trained')}.",
        f"Tuning: {context['tuning']}." if context.get("tuning") else "",
        "Intervals: 95 % percentile bootstrap over queries (images for the decoder), 1000"
        " resamples. `[needs captions]`: the method reads a caption stored with every gallery"
        " image; the others search the image vectors alone. `[knows the truth]`: a diagnostic,"
        " not a method a user has: it answers each query from its image's scene truth.",
        *[
            f"Variant `{method_name(name)}`: {text}; trained on the same training images as the"
            f" encoder, as many seeds, {context.get('variant_epochs')} epochs (the encoder:"
            f" {context.get('encoder_epochs')})."
            for name, text in context.get("variants", {}).items()
        ],
        *[
            f"Variant `{method_name(name)}` not run: {reason}."
            for name, reason in context.get("variants_not_run", {}).items()
        ],
        "",
        "## Answers",
        "",
        *[f"- {a}" for a in answers],
        "",
        "## Headline: recall@5 on the test gallery",
        "",
        headline_table(measurements),
        *keyword_rows_note(measurements),
        "",
    ]
    if any(m.task == PAIRED for m in measurements):
        md += [
            "## Paired differences",
            "",
            "Each method-vs-method statement above: the difference on the same queries (images"
            " for the decoders and probes), its 95 % interval from one bootstrap resample of"
            " those units for both methods.",
            "",
            paired_table(measurements),
            "",
        ]
    for query_set in sets:
        md += [f"## {query_set}", "", table(measurements, query_set), ""]
    md += [f"![{name}]({name}.png)" for name in images] + [""]
    (directory / "report.md").write_text("\n".join(md))
    return directory / "report.md", directory / "report.json"


def summary_lines(report_md: Path) -> list[str]:
    """The answers and the headline table of a written report.md."""
    keep, out = False, []
    for line in report_md.read_text().splitlines():
        if line.startswith("## "):
            keep = line in ("## Answers", "## Headline: recall@5 on the test gallery")
        if keep:
            out.append(line)
    return out
