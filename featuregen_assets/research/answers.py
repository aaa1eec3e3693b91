"""The report's answer to each question: the figures and verdicts its measurements support,
rendered in the wording of `answer_text`."""

from __future__ import annotations

from collections.abc import Sequence

from featuregen_assets.core.search.default_mode import SERVED_PREFIX
from featuregen_assets.research import vector_content as content
from featuregen_assets.research.answer_text import figure, say, versus
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
ORACLE_SOLVES = 0.15  # above this template recall@5 the category alone explains much
LITTLE_SHARE = 0.25  # under this share of the way from chance to the control: "holds little"
LEARNED_CEILING = "learned ceiling"
QUERY_SETS = ("template", "paraphrase", "partial_object", "partial_attribute", "compositional")
DECODER_LOOKUPS = ("category_mean_image", "nearest_training_image", "global_mean_image")
TOKEN_DECODER_METRICS = {"psnr_db": " dB", "ssim": "", "self_retrieval_top1": ""}  # → unit
BOX_LABELS = {  # the box rows quoted, in this order
    probe_method(LINEAR, TOKENS): "linear head on the tokens",
    probe_method(MLP, TOKENS): "MLP head on the tokens",
    probe_method(LINEAR, PIXELS): "linear head on raw pixels",
    probe_method(LINEAR, CONTROL): "positive control",
    CEILING: "ceiling",
}


def _best(measurements: Sequence[Measurement], query_set: str, methods: Sequence[str]):
    found = [find(measurements, query_set, "recall@5", m) for m in methods]
    found = [m for m in found if m is not None]
    return max(found, key=lambda m: m.value) if found else None


def _beats(verdict: str) -> bool:
    return verdict.startswith("beats")


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
        if not m.startswith((*LEARNED, "chance", SERVED_PREFIX))  # served: their own answer
        and CAPTION_METHODS not in m
        and content.KNOWS_TRUTH not in m
    ]
    captioned = [m for m in methods if CAPTION_METHODS in m]
    out = []
    if (oracle := find(measurements, "template", "recall@5", "category_oracle")) is not None:
        strength = "weak" if oracle.value <= ORACLE_SOLVES else "strong"
        out.append(say("oracle", oracle=figure(oracle), oracle_verdict=strength))
    for query_set in QUERY_SETS:
        trained = find(measurements, query_set, "recall@5", TRAINED)
        if trained is not None:
            answer = _query_set_answer(
                measurements, query_set, trained, vector_only, captioned, tests
            )
            out.append(answer)
    within = find(measurements, "template_within_category", "recall@5", TRAINED)
    chance = find(measurements, "template_within_category", "recall@5", "chance")
    if within is not None and chance is not None:
        verdict = "above" if within.ci_low > chance.value else "chance"
        out.append(
            say(
                "within_category",
                within=figure(within),
                chance=f"{chance.value:.3f}",
                within_verdict=verdict,
            )
        )
    swap = find(measurements, "template_swap_pairs", "pairwise_accuracy", TRAINED)
    if swap is not None:
        verdict = "binds" if swap.ci_low > 0.5 else "chance"
        out.append(say("swap_pairs", swap=figure(swap), swap_verdict=verdict))
    return out


def _query_set_answer(
    measurements: Sequence[Measurement],
    query_set: str,
    trained: Measurement,
    vector_only: Sequence[str],
    captioned: Sequence[str],
    tests: PairedTests,
) -> str:
    """The trained encoder on one query set against the best vector-only baseline, the best
    caption search and (template queries) each other vector-only baseline."""
    parts = [say("query_set", query_set=query_set, trained=figure(trained))]
    best = _best(measurements, query_set, vector_only)
    if best is not None:
        parts.append(versus(tests, "versus_vectors", trained, best, method=best.method))
    best_caption = _best(measurements, query_set, captioned)
    if best_caption is not None:
        parts.append(
            versus(tests, "versus_captions", trained, best_caption, method=best_caption.method)
        )
    others = [find(measurements, query_set, "recall@5", m) for m in vector_only]
    others = [m for m in others if m is not None and m is not best]
    if query_set == "template" and others:
        each = ", ".join(
            say("versus_one", versus=tests.versus(trained, m), method=m.method) for m in others
        )
        parts.append(say("versus_each", each=each))
    return "; ".join(parts) + "."


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
        if method_name(variant) == reference:
            continue
        parts, sets = [], {"wins": [], "loses": []}
        for query_set in QUERY_SETS:
            ours = find(measurements, query_set, "recall@5", method_name(variant))
            theirs = find(measurements, query_set, "recall@5", reference)
            if ours is None or theirs is None:
                continue
            parts.append(versus(tests, "variant_set", ours, theirs, query_set=query_set))
            said = tests.versus(ours, theirs)
            word = "wins" if _beats(said) else "loses" if said.startswith("loses") else None
            if word:
                sets[word].append(query_set)
        if not parts:
            continue
        apart = [say("variant_apart", word=w, sets=", ".join(s)) for w, s in sets.items() if s]
        out.append(
            say(
                "variant",
                variant=method_name(variant),
                description=description,
                reference=reference,
                parts="; ".join(parts),
                apart=" and ".join(apart),
                variant_verdict="apart" if apart else "level",
            )
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

    decoder = get("decoder", "psnr_db")
    if decoder is None:
        return []
    out = [
        versus(tests, "decoder_versus", decoder, theirs, other=other)
        for other in DECODER_LOOKUPS
        if (theirs := get(other, "psnr_db")) is not None
    ]
    out += _decoder_control_answers(dec, tests)
    out += _token_decoder_answers(dec, tests)
    top1 = get("decoder", "self_retrieval_top1")
    lookup = get("nearest_training_image", "self_retrieval_top1")
    if top1 is not None and lookup is not None:
        out.append(versus(tests, "self_retrieval", top1, lookup))
    cosine = get("decoder", "reencoded_cosine")
    same = get("reference: two test images of one", "reencoded_cosine")
    if cosine is not None and same is not None:
        verdict = "above" if _beats(tests.versus(cosine, same)) else "not_above"
        out.append(versus(tests, "reencoded", cosine, same, reencoded_verdict=verdict))
    return out


def _decoder_control_answers(dec: Sequence[Measurement], tests: PairedTests) -> list[str]:
    """The decoder's positive control (the small original in) against its ceiling: reached
    unless the paired difference is below -`REACHED_DB` with its interval."""
    control, ceiling, vector = (
        find(dec, DECODER_SET, "psnr_db", m) for m in (FROM_PIXELS, CONTROL_CEILING, FROM_VECTOR)
    )
    if control is None or ceiling is None or vector is None:
        return []
    difference = tests.difference(control, ceiling)
    reached = difference is not None and difference.ci_high >= -REACHED_DB
    verdict = "reached" if reached else "short"
    return [
        versus(
            tests,
            "decoder_control",
            control,
            ceiling,
            within=f"{REACHED_DB:.0f}",
            vector=figure(vector),
            control_verdict=verdict,
        )
    ]


def _token_decoder_answers(dec: Sequence[Measurement], tests: PairedTests) -> list[str]:
    """The decoder from patch tokens against the one from the stored vector, same budget."""
    parts = []
    for metric, unit in TOKEN_DECODER_METRICS.items():
        tokens = find(dec, DECODER_SET, metric, FROM_TOKENS)
        vector = find(dec, DECODER_SET, metric, FROM_VECTOR)
        if tokens is not None and vector is not None:
            parts.append(
                versus(tests, "token_decoder_metric", tokens, vector, metric=metric, unit=unit)
            )
    return [say("token_decoder", parts="; ".join(parts))] if parts else []


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
    versus_pixels = tests.versus(tokens, pixels)
    versus_linear = tests.versus(mlp, tokens)
    return [
        say(
            "probe_control",
            control=figure(control),
            ceiling=figure(ceiling),
            probe_strength="strong" if strong else "weak",
        ),
        say(
            "probe_tokens",
            tokens=figure(tokens),
            versus_pixels=versus_pixels,
            pixels=figure(pixels),
            mlp=figure(mlp),
            versus_linear=versus_linear,
            tokens_verdict=_tokens_verdict(mlp, control, strong, _beats(versus_linear)),
        ),
        *_box_answers(measurements),
    ]


def _tokens_verdict(
    mlp: Measurement, control: Measurement, strong: bool, mlp_beats_linear: bool
) -> str:
    """What the tokens hold, judged by the non-linear head against the linear head and the
    control (a `tokens_verdict` choice)."""
    if not strong:
        return "no_control"
    if not mlp_beats_linear:
        return "linear"
    return "not_linear" if mlp.value >= FOUND_SHARE * control.value else "little"


def _box_answers(measurements: Sequence[Measurement]) -> list[str]:
    """Boxes at IoU 0.5 (connected regions of the predicted labels): recall and precision of
    the heads on the tokens beside the control, the ceiling and raw pixels."""
    parts = []
    for method, label in BOX_LABELS.items():
        recall = find(measurements, PROBE_SET, f"box_recall@{BOX_IOU}", method)
        precision = find(measurements, PROBE_SET, f"box_precision@{BOX_IOU}", method)
        if recall is not None:
            also = "" if precision is None else say("box_precision", precision=figure(precision))
            parts.append(say("box", label=label, recall=figure(recall), precision=also))
    return [say("boxes", iou=BOX_IOU, parts="; ".join(parts))] if parts else []


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
        learned = any(m.method.startswith(LEARNED_CEILING) for m in readouts)
        loses = tests.versus(trained, best).startswith("loses")
        limit = "text" if loses else "vectors" if learned else "unknown"
        named = [(m.method.replace(content.KNOWS_TRUTH, "").strip(), m) for m in readouts]
        quoted = ", ".join(say("readout", figure=figure(m), method=n) for n, m in named)
        out.append(versus(tests, "readouts", trained, best, readouts=quoted, limit=limit))
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
            say(
                "attribute",
                task=task,
                vector=figure(vector),
                **{
                    name: f"{m.value:.3f}"
                    for name, m in (
                        ("mlp", mlp),
                        ("thumbnail", thumbnail),
                        ("chance", chance),
                        ("control", control),
                    )
                },
            )
        )
        if control.ci_high < CONTROL_SHARE and metric != "category":  # category: objects only
            control_low.append(task)
        headroom = control.value - chance.value
        if max(vector.value, mlp.value) - chance.value < LITTLE_SHARE * headroom:
            little.append(task)
    if not parts:
        return []
    return [
        say(
            "attributes",
            parts="; ".join(parts),
            control_low=", ".join(control_low),
            little=", ".join(little),
            attribute_control="misses" if control_low else "reaches",
            attribute_held="little" if little else "held",
        )
    ]
