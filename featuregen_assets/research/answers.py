"""The report's answer to each question, written from its measurements."""

from __future__ import annotations

from collections.abc import Sequence

from featuregen_assets.research import vector_content as content
from featuregen_assets.research.decoding import (
    CONTROL_CEILING,
    DECODER_SET,
    FROM_PIXELS,
    FROM_TOKENS,
    FROM_VECTOR,
)
from featuregen_assets.research.dense import (
    BOX_IOU,
    CEILING,
    CONTROL,
    LINEAR,
    MLP,
    PIXELS,
    TOKENS,
    probe_method,
)
from featuregen_assets.research.dense import QUERY_SET as PROBE_SET
from featuregen_assets.research.measurements import Measurement
from featuregen_assets.research.paired import PairedTests
from featuregen_assets.research.report import find, retrieval_methods
from featuregen_assets.research.variant_names import VARIANTS, method_name

TRAINED = "trained_encoder"
CAPTION_METHODS = "[needs captions]"
LEARNED = (TRAINED, *(method_name(v) for v in VARIANTS))
REFERENCE = method_name("lit")  # the registered recipe at the variants' epochs
CONTROL_SHARE = 0.9  # the control has reached its ceiling within this share of it
REACHED_DB = 1.0  # the decoder's control reaches its ceiling within this PSNR
FOUND_SHARE = 0.5  # a head "finds the layout" in the tokens at this share of the control
LEARNED_CEILING = "learned ceiling"
QUERY_SETS = ("template", "paraphrase", "partial_object", "partial_attribute", "compositional")


def _fmt(m: Measurement) -> str:
    return f"{m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]"


def _best(measurements: Sequence[Measurement], query_set: str, methods: Sequence[str]):
    found = [find(measurements, query_set, "recall@5", m) for m in methods]
    found = [m for m in found if m is not None]
    return max(found, key=lambda m: m.value) if found else None


def text_answers(
    measurements: Sequence[Measurement], tests: PairedTests | None = None
) -> list[str]:
    """Question 1, per query set: the trained encoder against the best baseline of each kind
    (each comparison a paired test on the same queries, kept in `tests`)."""
    tests = tests if tests is not None else PairedTests()
    methods = retrieval_methods(measurements)
    vector_only = [
        m
        for m in methods
        if not m.startswith((*LEARNED, "chance"))
        and CAPTION_METHODS not in m
        and content.KNOWS_TRUTH not in m
    ]
    captioned = [m for m in methods if CAPTION_METHODS in m]
    out = []
    oracle = find(measurements, "template", "recall@5", "category_oracle")
    if oracle is not None:
        out.append(
            f"Benchmark check: the category oracle (true category, random order inside it)"
            f" reaches template recall@5 {_fmt(oracle)}: "
            + (
                "the category alone does not solve it."
                if oracle.value <= 0.15
                else "the category alone still explains much of the task at this gallery size."
            )
        )
    for query_set in QUERY_SETS:
        trained = find(measurements, query_set, "recall@5", TRAINED)
        if trained is None:
            continue
        parts = [f"{query_set} queries: the trained encoder's recall@5 is {_fmt(trained)}"]
        best = _best(measurements, query_set, vector_only)
        if best is not None:
            parts.append(
                f"it {tests.versus(trained, best)} the best baseline that also searches image"
                f" vectors alone, {best.method} {_fmt(best)}"
            )
        best_caption = _best(measurements, query_set, captioned)
        if best_caption is not None:
            parts.append(
                f"and {tests.versus(trained, best_caption)} searching the stored captions"
                f" ({best_caption.method} {_fmt(best_caption)})"
            )
        others = [find(measurements, query_set, "recall@5", m) for m in vector_only]
        others = [m for m in others if m is not None and m is not best]
        if query_set == "template" and others:
            parts.append(
                "against each other such baseline it "
                + ", ".join(f"{tests.versus(trained, m)} {m.method}" for m in others)
            )
        out.append("; ".join(parts) + ".")
    within = find(measurements, "template_within_category", "recall@5", TRAINED)
    chance = find(measurements, "template_within_category", "recall@5", "chance")
    if within is not None and chance is not None:
        out.append(
            f"Inside the query's own category the trained encoder's recall@5 is {_fmt(within)}"
            f" against chance {chance.value:.3f} there: "
            + (
                "content beyond the category is found."
                if within.ci_low > chance.value
                else "no better than chance inside the category."
            )
        )
    swap = find(measurements, "template_swap_pairs", "pairwise_accuracy", TRAINED)
    if swap is not None:
        verdict = (
            "it binds colours to shapes better than chance"
            if swap.ci_low > 0.5
            else "it does not tell an image from its colour-swapped twin better than chance"
        )
        out.append(
            f"Attribute-swap hard negatives: the query's image outscores its twin in"
            f" {_fmt(swap)} of pairs (chance 0.5): {verdict}."
        )
    return out


def variant_answers(
    measurements: Sequence[Measurement], tests: PairedTests | None = None
) -> list[str]:
    """Each learned variant against the registered encoder's recipe, recall@5 per query set:
    against `lit` (the recipe retrained at the variants' epochs) where it was trained, else
    the registered encoder itself (paired tests on the same queries)."""
    tests = tests if tests is not None else PairedTests()
    out = []
    reference = REFERENCE if any(m.method == REFERENCE for m in measurements) else TRAINED
    for variant, description in VARIANTS.items():
        parts, wins, losses = [], [], []
        if method_name(variant) == reference:
            continue
        for query_set in QUERY_SETS:
            ours = find(measurements, query_set, "recall@5", method_name(variant))
            trained = find(measurements, query_set, "recall@5", reference)
            if ours is None or trained is None:
                continue
            verdict = tests.versus(ours, trained)
            parts.append(f"{query_set} {_fmt(ours)} {verdict} {_fmt(trained)}")
            if verdict.startswith("beats"):
                wins.append(query_set)
            elif verdict.startswith("loses"):
                losses.append(query_set)
        if not parts:
            continue
        apart = [
            f"{word} on {', '.join(sets)}"
            for word, sets in (("wins", wins), ("loses", losses))
            if sets
        ]
        summary = (
            f"it {' and '.join(apart)} (paired difference's interval clear of 0)"
            if apart
            else "every paired difference's interval holds 0"
        )
        out.append(
            f"Variant {method_name(variant)} ({description}) against {reference}'s"
            f" recall@5: {'; '.join(parts)}: {summary}."
        )
    return out


def decoder_answers(
    measurements: Sequence[Measurement], tests: PairedTests | None = None
) -> list[str]:
    """Question 2: the decoder against the lookups that need no training (paired tests on
    the same test images)."""
    tests = tests if tests is not None else PairedTests()
    dec = [m for m in measurements if m.task == "decoding"]

    def get(method: str, metric: str) -> Measurement | None:
        return find(dec, DECODER_SET, metric, method)

    out = []
    decoder = get("decoder", "psnr_db")
    if decoder is None:
        return out
    for other in ("category_mean_image", "nearest_training_image", "global_mean_image"):
        theirs = get(other, "psnr_db")
        if theirs is not None:
            out.append(
                f"Decoder PSNR {_fmt(decoder)} dB {tests.versus(decoder, theirs)} {other}"
                f" ({_fmt(theirs)} dB)."
            )
    out += _decoder_control_answers(dec, tests)
    out += _token_decoder_answers(dec, tests)
    top1, lookup = (
        get("decoder", "self_retrieval_top1"),
        get("nearest_training_image", "self_retrieval_top1"),
    )
    if top1 is not None and lookup is not None:
        out.append(
            f"Self-retrieval top-1 of the re-encoded output: decoder {_fmt(top1)}"
            f" {tests.versus(top1, lookup)} the nearest training image ({_fmt(lookup)})."
        )
    cosine, same = (
        get("decoder", "reencoded_cosine"),
        get("reference: two test images of one", "reencoded_cosine"),
    )
    if cosine is not None and same is not None:
        verdict = tests.versus(cosine, same)
        out.append(
            f"Re-encoded cosine {_fmt(cosine)} {verdict} {_fmt(same)} for two different test"
            " images of one category: "
            + (
                "above it, so the output carries more than its category."
                if verdict.startswith("beats")
                else "not above it, so the cosine alone shows no more than the category."
            )
        )
    return out


def _decoder_control_answers(dec: Sequence[Measurement], tests: PairedTests) -> list[str]:
    """The decoder's positive control (the small original in) against its ceiling: reached
    unless the paired difference is below -`REACHED_DB` with its interval."""

    control, ceiling, vector = (
        find(dec, DECODER_SET, "psnr_db", m) for m in (FROM_PIXELS, CONTROL_CEILING, FROM_VECTOR)
    )
    if control is None or ceiling is None or vector is None:
        return []
    verdict = tests.versus(control, ceiling)
    difference = tests.difference(control, ceiling)
    reached = difference is not None and difference.ci_high >= -REACHED_DB
    return [
        f"Decoder positive control (the same decoder and budget, fed the small original):"
        f" PSNR {_fmt(control)} dB {verdict} its ceiling {_fmt(ceiling)} dB (that original"
        f" itself): "
        + (
            f"it reaches it (within {REACHED_DB:.0f} dB), so the decoder renders what its input"
            f" holds and the decoder from the stored vector ({_fmt(vector)} dB) is limited by"
            " the vector."
            if reached
            else "it falls short at this budget, so the decoder itself is part of the limit and"
            f" the figures from the stored vector ({_fmt(vector)} dB) are a lower bound."
        )
    ]


def _token_decoder_answers(dec: Sequence[Measurement], tests: PairedTests) -> list[str]:
    """The decoder from patch tokens against the one from the stored vector, same budget."""
    out = []
    for metric, unit in (("psnr_db", " dB"), ("ssim", ""), ("self_retrieval_top1", "")):
        tokens = find(dec, DECODER_SET, metric, FROM_TOKENS)
        vector = find(dec, DECODER_SET, metric, FROM_VECTOR)
        if tokens is not None and vector is not None:
            out.append(
                f"{metric} {_fmt(tokens)}{unit} {tests.versus(tokens, vector)} {_fmt(vector)}{unit}"
            )
    if not out:
        return []
    return [
        "Decoder from all patch tokens against one from the stored vector, trained alike (same"
        " images, config and epochs): " + "; ".join(out) + "."
    ]


def probe_answers(
    measurements: Sequence[Measurement], tests: PairedTests | None = None
) -> list[str]:
    """Question 2, dense: the probe on the patch tokens, told apart from a weak probe by its
    positive control and its non-linear head (foreground IoU; paired tests over images)."""
    tests = tests if tests is not None else PairedTests()

    def get(prefix: str) -> Measurement | None:
        return find(measurements, PROBE_SET, "foreground_iou", prefix)

    ceiling, control = get(CEILING), get(probe_method(LINEAR, CONTROL))
    tokens, pixels = get(probe_method(LINEAR, TOKENS)), get(probe_method(LINEAR, PIXELS))
    mlp = get(probe_method(MLP, TOKENS))
    if None in (ceiling, control, tokens, pixels, mlp):
        return []
    strong = control.ci_high >= CONTROL_SHARE * ceiling.value
    return [
        *_iou_answers(ceiling, control, tokens, pixels, mlp, strong, tests),
        *_box_answers(measurements),
    ]


def _iou_answers(
    ceiling: Measurement,
    control: Measurement,
    tokens: Measurement,
    pixels: Measurement,
    mlp: Measurement,
    strong: bool,
    tests: PairedTests,
) -> list[str]:
    return [
        f"Dense probe, foreground IoU on the test images: the positive control (true class"
        f" shares + noise) reaches {_fmt(control)} against the protocol's ceiling"
        f" {_fmt(ceiling)}: "
        + (
            "the probe finds what features hold."
            if strong
            else "the probe falls short even there, so its figures below say little."
        ),
        f"Patch tokens: linear head {_fmt(tokens)} {tests.versus(tokens, pixels)} raw pixel patches"
        f" ({_fmt(pixels)}); the non-linear head on the tokens reaches {_fmt(mlp)}, which"
        f" {tests.versus(mlp, tokens)} the linear head: "
        + _tokens_verdict(tokens, mlp, control, strong, tests),
    ]


def _box_answers(measurements: Sequence[Measurement]) -> list[str]:
    """Boxes at IoU 0.5 (connected regions of the predicted labels): recall and precision of
    the heads on the tokens beside the control, the ceiling and raw pixels."""
    shown = [
        (probe_method(LINEAR, TOKENS), "linear head on the tokens"),
        (probe_method(MLP, TOKENS), "MLP head on the tokens"),
        (probe_method(LINEAR, PIXELS), "linear head on raw pixels"),
        (probe_method(LINEAR, CONTROL), "positive control"),
        (CEILING, "ceiling"),
    ]
    parts = []
    for method, label in shown:
        recall = find(measurements, PROBE_SET, f"box_recall@{BOX_IOU}", method)
        precision = find(measurements, PROBE_SET, f"box_precision@{BOX_IOU}", method)
        if recall is not None:
            parts.append(
                f"{label} recall {_fmt(recall)}"
                + (f", precision {_fmt(precision)}" if precision is not None else "")
            )
    if not parts:
        return []
    return [
        f"Boxes at IoU {BOX_IOU} (each connected region of one class in the predicted labels is a"
        " box; no box head), against the scene records' boxes: " + "; ".join(parts) + "."
    ]


def _tokens_verdict(
    linear: Measurement, mlp: Measurement, control: Measurement, strong: bool, tests: PairedTests
) -> str:
    if not strong:
        return "no verdict while the control misses its ceiling."
    if not tests.versus(mlp, linear).startswith("beats"):
        return "the tokens hold no more of it than the linear head reads."
    if mlp.value >= FOUND_SHARE * control.value:
        return "the tokens hold the layout, but not linearly."
    return "a little more than the linear head, far below the control: they hold little of it."


LITTLE_SHARE = 0.25  # under this share of the way from chance to the control: "holds little"


def content_answers(
    measurements: Sequence[Measurement], tests: PairedTests | None = None
) -> list[str]:
    """Why the encoder stops where it does: the truth read-outs beside it (paired tests on
    the same queries), and what a probe reads from the stored vectors against chance, the
    thumbnail and the positive control."""
    tests = tests if tests is not None else PairedTests()
    out = []
    trained = find(measurements, "template", "recall@5", TRAINED)
    readouts = [
        m
        for m in measurements
        if m.query_set == "template" and m.metric == "recall@5" and content.KNOWS_TRUTH in m.method
    ]
    if trained is not None and readouts:
        best = max(readouts, key=lambda m: m.value)
        verdict = tests.versus(trained, best)
        learned = any(m.method.startswith(LEARNED_CEILING) for m in readouts)
        out.append(
            "Why: read-outs that know each template query's scene truth exactly and map it"
            " into the stored vectors (fit on the training images, tuned on validation) reach"
            " recall@5 "
            + ", ".join(
                f"{_fmt(m)} ({m.method.replace(content.KNOWS_TRUTH, '').strip()})" for m in readouts
            )
            + f"; the trained encoder's {_fmt(trained)} {verdict} the best of them: "
            + (
                "the vectors hold more than the encoder reaches, so the text side limits it."
                if verdict.startswith("loses")
                else "no read-out from the truth finds more in these vectors than the encoder"
                + (
                    " (a learned ceiling included), so the vectors limit the search as far as"
                    " these read-outs can tell."
                    if learned
                    else "; these read-outs are weak estimators, not a ceiling, so that bounds"
                    " nothing."
                )
            )
        )
    return out + _attribute_answers(measurements)


def _attribute_answers(measurements: Sequence[Measurement]) -> list[str]:
    def get(metric: str, method: str) -> Measurement | None:
        return find(measurements, content.PROBE_SET, metric, method)

    parts, little, control_low = [], [], []
    for metric in content.METRICS.values():
        chance = get(metric, "chance")
        vector = get(metric, content.probe_method(content.LINEAR, content.VECTOR))
        mlp = get(metric, content.probe_method(content.MLP, content.VECTOR))
        thumbnail = get(metric, content.probe_method(content.LINEAR, content.THUMBNAIL))
        control = get(metric, content.probe_method(content.LINEAR, content.CONTROL))
        if None in (chance, vector, mlp, thumbnail, control):
            continue
        task = metric.replace("_", " ")
        parts.append(
            f"{task} {_fmt(vector)} (MLP {mlp.value:.3f}, thumbnail {thumbnail.value:.3f},"
            f" chance {chance.value:.3f}, control {control.value:.3f})"
        )
        if control.ci_high < CONTROL_SHARE and metric != "category":  # category: objects only
            control_low.append(task)
        headroom = control.value - chance.value
        if max(vector.value, mlp.value) - chance.value < LITTLE_SHARE * headroom:
            little.append(task)
    if not parts:
        return []
    verdict = (
        f"the control misses its ceiling on {', '.join(control_low)}, so those say little"
        if control_low
        else "the control reaches its ceiling, so the probe reads what is there"
    )
    held = (
        f"the vectors hold little of the {', '.join(little)} (under a quarter of the way from"
        " chance to its control, linear or not)"
        if little
        else "each attribute is held above a quarter of the way from chance to the control"
    )
    return [
        "What the stored vectors hold, balanced accuracy of a linear probe on the test images"
        " (chance is 1 / classes; an attribute at a place is scored where an object is; the"
        " category's control reads the true objects without the category): "
        + "; ".join(parts)
        + f": {verdict}; {held}."
    ]
