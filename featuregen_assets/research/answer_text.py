"""The answers' wording, as data: each sentence a `string.Template`, and each verdict in it a
placeholder whose worded alternatives are in `CHOICES`. `answers.py` works out the figures
and which alternative holds; `say` renders the sentence."""

from __future__ import annotations

from string import Template

from featuregen_assets.research.measurements import Measurement
from featuregen_assets.research.paired import PairedTests

SENTENCES: dict[str, str] = {
    # what the weights license: the first answer (weights.licence_answer)
    "weights_random": "Weights: the image model `$image` is a random network (tiny profile)"
    "$text_too: pipeline validation on random weights; no finding about DINOv2. The figures"
    " below check that every method, baseline and control runs and is scored fairly; what"
    " DINOv2's learned space holds needs the real profile and the standard protocols"
    " (docs/research.md, Standard protocols).",
    "weights_random_text": "Weights: the image model `$image` is pretrained, the text tower"
    " `$text` is random (tiny profile): findings about these image vectors on these images,"
    " with a text side trained from scratch on their captions only (paraphrases it never saw"
    " are out of its reach).",
    "weights_image_only": "Weights: pretrained image model `$image`: findings about it on"
    " these images, within this protocol.",
    "weights_pretrained": "Weights: pretrained image model `$image` and text tower `$text`:"
    " findings about these models on these images and queries, within this protocol.",
    # which served search mode to use (served_modes.served_mode_answer)
    "served_mode": "Which mode should a user of this store search with? $best has the best"
    " mean $metric of the served modes on the test split; the others: $others. The search"
    " service's default mode follows this unless FEATUREGEN_SEARCH_MODE is set.",
    "served_mode_figures": "$mode (mean $mean: $figures)",
    "served_mode_weights": "Hybrid fuses its lists with the weights $weights: the best mean"
    " $metric ($value) of $candidates candidates on the validation split's $queries queries,"
    " which the service reads unless FEATUREGEN_HYBRID_WEIGHTS is set.",
    # a standard protocol's answers (protocols.protocol_answers)
    "protocol_direction": "$direction on the test gallery ($gallery): $figures (percent).",
    "protocol_anchors": "Published anchors: $anchors.",
    # question 1: text to image
    "oracle": "Benchmark check: the category oracle (true category, random order inside it)"
    " reaches template recall@5 $oracle: $oracle_verdict",
    "query_set": "$query_set queries: the trained encoder's recall@5 is $trained",
    "versus_vectors": "it $versus the best baseline that also searches image vectors alone,"
    " $method $theirs",
    "versus_captions": "and $versus searching the stored captions ($method $theirs)",
    "versus_each": "against each other such baseline it $each",
    "versus_one": "$versus $method",
    "within_category": "Inside the query's own category the trained encoder's recall@5 is"
    " $within against chance $chance there: $within_verdict",
    "swap_pairs": "Attribute-swap hard negatives: the query's image outscores its twin in"
    " $swap of pairs (chance 0.5): $swap_verdict.",
    "variant": "Variant $variant ($description) against $reference's recall@5: $parts:"
    " $variant_verdict.",
    "variant_set": "$query_set $ours $versus $theirs",
    "variant_apart": "$word on $sets",
    # why the encoder stops where it does
    "readouts": "Why: read-outs that know each template query's scene truth exactly and map it"
    " into the stored vectors (fit on the training images, tuned on validation) reach recall@5"
    " $readouts; the trained encoder's $ours $versus the best of them: $limit",
    "readout": "$figure ($method)",
    "attributes": "What the stored vectors hold, balanced accuracy of a linear probe on the test"
    " images (chance is 1 / classes; an attribute at a place is scored where an object is; the"
    " category's control reads the true objects without the category): $parts:"
    " $attribute_control; $attribute_held.",
    "attribute": "$task $vector (MLP $mlp, thumbnail $thumbnail, chance $chance, control $control)",
    # question 2: decoding
    "decoder_versus": "Decoder PSNR $ours dB $versus $other ($theirs dB).",
    "decoder_control": "Decoder positive control (the same decoder and budget, fed the small"
    " original): PSNR $ours dB $versus its ceiling $theirs dB (that original itself):"
    " $control_verdict",
    "token_decoder": "Decoder from all patch tokens against one from the stored vector, trained"
    " alike (same images, config and epochs): $parts.",
    "token_decoder_metric": "$metric $ours$unit $versus $theirs$unit",
    "self_retrieval": "Self-retrieval top-1 of the re-encoded output: decoder $ours $versus the"
    " nearest training image ($theirs).",
    "reencoded": "Re-encoded cosine $ours $versus $theirs for two different test images of one"
    " category: $reencoded_verdict",
    # question 2: dense probes
    "probe_control": "Dense probe, foreground IoU on the test images: the positive control"
    " (true class shares + noise) reaches $control against the protocol's ceiling $ceiling:"
    " $probe_strength",
    "probe_tokens": "Patch tokens: linear head $tokens $versus_pixels raw pixel patches"
    " ($pixels); the non-linear head on the tokens reaches $mlp, which $versus_linear the"
    " linear head: $tokens_verdict",
    "boxes": "Boxes at IoU $iou (each connected region of one class in the predicted labels is"
    " a box; no box head), against the scene records' boxes: $parts.",
    "box": "$label recall $recall$precision",
    "box_precision": ", precision $precision",
}

# A sentence that sets one measurement against another quotes them as $ours and $theirs, and
# their paired test as $versus (`versus`). A verdict placeholder → the value `answers.py`
# gives it → its wording (a template over the sentence's other values).
CHOICES: dict[str, dict[str, str]] = {
    "text_too": {"random": ", and so is the text tower", "pretrained": ""},
    "oracle_verdict": {
        "weak": "the category alone does not solve it.",
        "strong": "the category alone still explains much of the task at this gallery size.",
    },
    "within_verdict": {
        "above": "content beyond the category is found.",
        "chance": "no better than chance inside the category.",
    },
    "swap_verdict": {
        "binds": "it binds colours to shapes better than chance",
        "chance": "it does not tell an image from its colour-swapped twin better than chance",
    },
    "variant_verdict": {
        "apart": "it $apart (paired difference's interval clear of 0)",
        "level": "every paired difference's interval holds 0",
    },
    "limit": {
        "text": "the vectors hold more than the encoder reaches, so the text side limits it.",
        "vectors": "no read-out from the truth finds more in these vectors than the encoder (a"
        " learned ceiling included), so the vectors limit the search as far as these read-outs"
        " can tell.",
        "unknown": "no read-out from the truth finds more in these vectors than the encoder;"
        " these read-outs are weak estimators, not a ceiling, so that bounds nothing.",
    },
    "attribute_control": {
        "misses": "the control misses its ceiling on $control_low, so those say little",
        "reaches": "the control reaches its ceiling, so the probe reads what is there",
    },
    "attribute_held": {
        "little": "the vectors hold little of the $little (under a quarter of the way from"
        " chance to its control, linear or not)",
        "held": "each attribute is held above a quarter of the way from chance to the control",
    },
    "control_verdict": {
        "reached": "it reaches it (within $within dB), so the decoder renders what its input"
        " holds and the decoder from the stored vector ($vector dB) is limited by the vector.",
        "short": "it falls short at this budget, so the decoder itself is part of the limit and"
        " the figures from the stored vector ($vector dB) are a lower bound.",
    },
    "reencoded_verdict": {
        "above": "above it, so the output carries more than its category.",
        "not_above": "not above it, so the cosine alone shows no more than the category.",
    },
    "probe_strength": {
        "strong": "the probe finds what features hold.",
        "weak": "the probe falls short even there, so its figures below say little.",
    },
    "tokens_verdict": {
        "no_control": "no verdict while the control misses its ceiling.",
        "linear": "the tokens hold no more of it than the linear head reads.",
        "not_linear": "the tokens hold the layout, but not linearly.",
        "little": "a little more than the linear head, far below the control: they hold little"
        " of it.",
    },
}


def say(sentence: str, **values: object) -> str:
    """`SENTENCES[sentence]` with `values` filled in; a verdict placeholder (a key of
    `CHOICES`) gets the wording of the alternative its value names."""
    filled = {
        name: Template(CHOICES[name][str(value)]).substitute(values) if name in CHOICES else value
        for name, value in values.items()
    }
    return Template(SENTENCES[sentence]).substitute(filled)


def versus(
    tests: PairedTests, sentence: str, ours: Measurement, theirs: Measurement, **values
) -> str:
    """`sentence` setting `ours` against `theirs` by their paired test (kept once in `tests`,
    however often asked); `values` fill the rest."""
    said = tests.versus(ours, theirs)
    return say(sentence, ours=figure(ours), versus=said, theirs=figure(theirs), **values)


def figure(m: Measurement) -> str:
    """A measurement as the answers quote it: value [95 % interval]."""
    return f"{m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]"
