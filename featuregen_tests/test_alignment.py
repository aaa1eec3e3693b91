"""Text-to-DINOv2 alignment: split, loss, training recipes, search-space consistency, save/load."""

import json
import math

import numpy as np
import pytest
import torch
from transformers import CLIPTextModel

from featuregen_assets.core.training.alignment import (
    AlignedTextEncoder,
    AlignmentConfig,
    ContrastiveLoss,
)
from featuregen_assets.core.training.alignment_training import train_alignment
from featuregen_assets.core.training.common import BestWeights
from featuregen_assets.core.training.splits import (
    Split,
    caption_groups,
    held_out_mask,
    images_mentioning,
    is_held_out,
    leaked_test_images,
    three_way_split,
    word_bag,
)
from featuregen_assets.core.training.text_views import text_views
from featuregen_assets.core.vision.model_profiles import tiny_dir

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")


@pytest.fixture(scope="module")
def text_tower(tiny_models_dir):
    return tiny_dir("text_tower", tiny_models_dir)


@pytest.fixture(scope="module")
def pairs():
    """96 images, two per colour and shape ("a red circle", "the red circle"), vectors built
    from the words + noise."""
    rng = np.random.default_rng(0)
    word = {w: rng.normal(size=32) for w in COLOURS + SHAPES}
    offset = rng.normal(size=32) * 3  # a shared component, as random-weight ViT vectors have
    texts, ids, vectors = [], [], []
    for c in COLOURS:
        for s in SHAPES:
            for k in range(2):
                texts.append(f"{('a', 'the')[k]} {c} {s}")
                ids.append(f"img-{c}-{s}-{k}")
                vectors.append(offset + word[c] + word[s] + 0.3 * rng.normal(size=32))
    return texts, ids, np.array(vectors, dtype=np.float32)


def _config(**kw):
    base = dict(epochs=30, batch_size=32, lr=3e-3, device="cpu", eval_every=0, seed=0)
    return AlignmentConfig(**{**base, **kw})


def test_split_is_deterministic_stable_and_near_the_fraction():
    ids = [f"id{i}" for i in range(2000)]
    mask = held_out_mask(ids, 0.2)
    assert 0.17 < mask.mean() < 0.23
    assert (held_out_mask(ids[:500], 0.2) == mask[:500]).all()  # other ids never move an id
    assert mask[7] == is_held_out("id7", 0.2)
    assert (held_out_mask(ids, 0.2, salt="other") != mask).any()
    tiny = held_out_mask(["a", "b"], 0.01)
    assert tiny.sum() == 1


def test_infonce_treats_duplicate_captions_as_positives():
    loss = ContrastiveLoss("infonce")
    e = torch.eye(3)
    text = e[[0, 0, 1, 2]]  # rows 0 and 1: the same caption, of two identical images
    image = e[[0, 0, 1, 2]]
    same = torch.tensor([0, 0, 1, 2])
    positives = same[:, None] == same[None, :]
    assert loss(text, image, positives).item() < 0.01
    # treated as negatives, the duplicates cost log 2 in both directions on 2 of 4 rows
    plain = loss(text, image, torch.eye(4, dtype=torch.bool)).item()
    assert plain == pytest.approx(math.log(2) / 2, abs=0.01)


def test_siglip_loss_prefers_matching_pairs():
    loss = ContrastiveLoss("siglip")
    e = torch.eye(4)
    positives = torch.eye(4, dtype=torch.bool)
    assert loss(e, e, positives).item() < loss(e, e[[1, 2, 3, 0]], positives).item()


def test_lit_training_beats_untrained_and_chance(text_tower, pairs):
    texts, ids, vectors = pairs
    logs = []
    result = train_alignment(texts, ids, vectors, text_tower, _config(epochs=15), log=logs.append)
    m = result.metrics
    assert len(result.loss_curve) == 15 and result.loss_curve[-1] < result.loss_curve[0]
    assert m["held_out_images"] + m["validation_images"] + m["train_images"] == 96
    assert m["recall@5"] >= 3 * m["chance_recall@5"]
    assert m["recall@5"] > m["untrained_recall@5"]
    [last] = [line for line in logs if line.startswith("epoch 15/15: loss ")]
    assert "validation recall@5" in last and last.endswith(":00:00 left")


def test_query_ranking_over_stored_vectors_equals_training_ranking(text_tower, pairs):
    texts, ids, vectors = pairs
    encoder = train_alignment(
        texts, ids, vectors, text_tower, _config(max_steps=5), log=lambda _: None
    ).encoder
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    z = (torch.from_numpy(unit) - encoder.feature_mean) / encoder.feature_std
    with torch.no_grad():
        t = encoder(**encoder.tokenize(texts[:8]))  # training space
    train_rank = np.argsort(-(t @ z.T).numpy(), axis=1)
    query = encoder.encode(texts[:8])
    assert np.allclose(np.linalg.norm(query, axis=1), 1, atol=1e-5)
    assert (np.argsort(-(query @ unit.T), axis=1)[:, :10] == train_rank[:, :10]).all()


@pytest.mark.parametrize("recipe", ["talk2dino", "projection"])
def test_frozen_tower_recipes_train_only_the_head(text_tower, pairs, recipe):
    texts, ids, vectors = pairs
    result = train_alignment(
        texts, ids, vectors, text_tower, _config(recipe=recipe, max_steps=20), log=lambda _: None
    )

    original = CLIPTextModel.from_pretrained(text_tower).state_dict()
    trained = result.encoder.tower.state_dict()
    assert all(torch.equal(original[k], trained[k]) for k in original)
    assert result.loss_curve[-1] < result.loss_curve[0]
    if recipe == "talk2dino":
        assert isinstance(result.encoder.head[1], torch.nn.Tanh)


def test_lit_train_last_layers_freezes_the_rest(text_tower, pairs):
    texts, ids, vectors = pairs
    result = train_alignment(
        texts,
        ids,
        vectors,
        text_tower,
        _config(train_last_layers=1, max_steps=5),
        log=lambda _: None,
    )
    original = CLIPTextModel.from_pretrained(text_tower).state_dict()
    trained = result.encoder.tower.state_dict()
    changed = {k for k in original if not torch.equal(original[k], trained[k])}
    assert changed and all(k.startswith(("encoder.layers.1.", "final_layer_norm")) for k in changed)


def test_training_is_reproducible_and_round_trips(text_tower, pairs, tmp_path):
    texts, ids, vectors = pairs
    config = _config(loss="siglip", max_steps=6)
    first = train_alignment(texts, ids, vectors, text_tower, config, log=lambda _: None)
    second = train_alignment(texts, ids, vectors, text_tower, config, log=lambda _: None)
    assert first.loss_curve == second.loss_curve
    queries = ["a red circle", "a blue star", "something unknown"]
    first.encoder.save(tmp_path / "enc", metrics=first.metrics)
    loaded = AlignedTextEncoder.load(tmp_path / "enc")
    assert (tmp_path / "enc" / "model.safetensors").is_file()
    assert loaded.training_config["loss"] == "siglip"
    np.testing.assert_allclose(loaded.encode(queries), first.encoder.encode(queries), atol=1e-6)
    np.testing.assert_allclose(second.encoder.encode(queries), first.encoder.encode(queries))


def test_config_rejects_unknown_choices():
    with pytest.raises(ValueError, match="recipe"):
        AlignmentConfig(recipe="clip")
    with pytest.raises(ValueError, match="train_last_layers"):
        AlignmentConfig(recipe="talk2dino", train_last_layers=1)


def test_three_way_split_is_disjoint_stable_and_forces_test_images():
    ids = [f"id{i}" for i in range(2000)]
    split = three_way_split(ids, 0.2, 0.1, forced_test={"id3", "id4"})
    sides = [set(split.train), set(split.validation), set(split.test)]
    assert sum(map(len, sides)) == 2000 and set().union(*sides) == set(ids)
    assert {"id3", "id4"} <= sides[2]
    assert 0.08 < len(sides[1]) / 2000 < 0.12
    held = held_out_mask(ids, 0.2)
    assert {i for i, h in zip(ids, held, strict=True) if h} <= sides[2]
    again = three_way_split(ids[:500], 0.2, 0.1)
    assert set(again.validation) == sides[1] & set(ids[:500])
    assert split.hashes() != again.hashes()


def _twin_captions(count: int) -> tuple[list[str], list[str]]:
    """Captions in fours: a scene, its repeat and their two colour-swap twins (texts, ids)."""
    colours = ["red", "blue", "green", "yellow", "purple"]
    texts, ids = [], []
    for i in range(count):
        a, b = colours[(i // 4) % 5], colours[(i // 20) % 5]
        first, second = (b, a) if i % 4 >= 2 else (a, b)
        texts.append(f"a {first} circle left of a {second} square, scene {i // 4}")
        ids.append(f"img{i}")
    return texts, ids


def test_grouped_split_keeps_same_word_bags_on_one_side_and_records_its_rule():
    texts, ids = _twin_captions(400)
    bags = {i: word_bag(t) for t, i in zip(texts, ids, strict=True)}

    def leaks(split) -> int:
        trained = {bags[i] for i in split.train}
        return sum(bags[i] in trained for i in (*split.test, *split.validation))

    plain = three_way_split(ids, 0.2, 0.1)
    assert leaks(plain) > 0 and plain.as_dict()["grouping"] == "image_id"  # the old leak
    grouped = three_way_split(
        ids, 0.2, 0.1, forced_test={"img0"}, groups=caption_groups(texts, ids)
    )
    assert leaks(grouped) == 0 and grouped.test and grouped.train
    assert {i for i in ids if bags[i] == bags["img0"]} <= set(grouped.test)  # forced whole
    assert word_bag("A blue circle, left of a RED square") == word_bag(
        "a red square left of a blue circle"
    )
    record = json.loads(json.dumps(grouped.as_dict()))
    assert Split.from_dict(record) == grouped and "colour-swap" in grouped.grouping_rule()
    old = {k: v for k, v in record.items() if k != "grouping"}
    assert Split.from_dict(old, keep=set(ids[:100])).grouping == "image_id"


def test_the_demo_scenes_split_by_caption_words_leave_no_twin_across():
    from featuregen_assets.demo.scenes import CATEGORIES, HELD_OUT_COMBINATIONS, render_scene

    scenes = [render_scene(c, i)[0] for c in CATEGORIES for i in range(64)]  # demo scale
    texts, ids = [s.caption for s in scenes], [s.name for s in scenes]
    forced = images_mentioning(texts, ids, HELD_OUT_COMBINATIONS)
    plain = three_way_split(ids, 0.2, 0.1, forced_test=forced)
    grouped = three_way_split(ids, 0.2, 0.1, forced_test=forced, groups=caption_groups(texts, ids))
    assert leaked_test_images(plain, texts, ids) > 10  # the twins the old split leaked
    assert leaked_test_images(grouped, texts, ids) == 0 and forced <= set(grouped.test)
    assert 0.15 < len(grouped.test) / len(ids) < 0.45


def test_caption_groups_join_images_through_any_shared_word_bag():
    groups = caption_groups(
        ["a red ring", "a ring red", "a blue star", "a blue star", "a green ring", "a red ring"],
        ["x", "y", "y", "z", "w", "v"],
    )
    assert groups["x"] == groups["y"] == groups["z"] == groups["v"] != groups["w"]
    # a caption on many images is a label (a category caption): it links nothing
    ids = [f"img{i}" for i in range(300)]
    labelled = caption_groups(["a photo of a bank"] * 300 + ["a red ring"] * 2, ids + ids[:2])
    assert len(set(labelled.values())) == 299 and labelled["img0"] == labelled["img1"]


def test_test_images_are_never_read_while_training_and_no_test_query_is_trained(text_tower, pairs):
    texts, ids, vectors = pairs
    config = _config(max_steps=12, eval_every=1)
    first = train_alignment(texts, ids, vectors, text_tower, config, log=lambda _: None)
    test = set(first.split.test)
    scrambled = vectors.copy()
    rows = [r for r, i in enumerate(ids) if i in test]
    scrambled[rows] = np.random.default_rng(1).normal(size=scrambled[rows].shape) * 50
    second = train_alignment(texts, ids, scrambled, text_tower, config, log=lambda _: None)
    assert second.split == first.split and rows
    assert first.loss_curve == second.loss_curve
    assert first.metrics["eval_history"] == second.metrics["eval_history"]  # validation only
    probe = ["a red circle", "a green ring"]
    np.testing.assert_array_equal(first.encoder.encode(probe), second.encoder.encode(probe))
    assert first.metrics["recall@5"] != second.metrics["recall@5"]  # test is what changed
    trained = {t for t, i in zip(texts, ids, strict=True) if i in set(first.split.train)}
    tested = {t for t, i in zip(texts, ids, strict=True) if i in test}
    assert first.metrics["queries"] == len(tested - trained)


def test_training_stops_when_validation_stalls_and_keeps_the_best_weights(text_tower, pairs):
    texts, ids, vectors = pairs
    config = _config(epochs=30, eval_every=1, patience=3, lr=1e-2)
    result = train_alignment(texts, ids, vectors, text_tower, config, log=lambda _: None)
    history = [h["recall@5"] for h in result.metrics["eval_history"]]
    kept = result.metrics["kept_epoch"]
    assert history[kept - 1] == max(history) > history[0]
    assert len(result.loss_curve) == kept + 3 < 30  # three stale evaluations, then stop
    assert result.metrics["validation_recall@5"] == pytest.approx(max(history))


def test_best_weights_are_a_copy_of_the_best_offer():
    layer = torch.nn.Linear(2, 2)
    best = BestWeights()
    for recall, value in ((0.2, 1.0), (0.5, 2.0), (0.4, 3.0), (0.5, 4.0)):
        torch.nn.init.constant_(layer.weight, value)
        best.offer(recall, int(value), layer)
    assert (best.epoch, best.value, best.stale) == (2, 0.5, 2)  # ties keep the earlier
    assert torch.equal(best.state["weight"], torch.full((2, 2), 2.0))
    counting = BestWeights(keep=False)
    for recall in (0.2, 0.5, 0.4):
        counting.offer(recall, 1, layer)
    assert (counting.value, counting.stale, counting.state) == (0.5, 1, None)


def test_test_phrases_send_images_to_test():
    texts = ["a purple circle at the centre, in a bank", "a red star, in a shop"] * 20
    ids = [f"img{i}" for i in range(40)]
    vectors = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    split = three_way_split(ids, 0.2, 0.1, forced_test={i for i in ids[::2]})
    assert set(ids[::2]) <= set(split.test)
    assert images_mentioning(texts, ids, ["Purple Circle"]) == set(ids[::2])
    assert len(vectors) == 40


def test_text_views_cut_clauses_heads_and_modifiers():
    views = text_views("a large red circle at the top left and a small blue square, in a cafe")
    for expected in (
        "a large red circle at the top left",
        "a large red circle",
        "a red circle",
        "a red circle at the top left",
        "a small blue square",
        "a blue square",
        "in a cafe",
        "a large red circle at the top left and a small blue square",
        "a small blue square and a large red circle at the top left, in a cafe",
    ):
        assert expected in views
    assert len(views) == len(set(views))
    assert text_views("a dog") == []
