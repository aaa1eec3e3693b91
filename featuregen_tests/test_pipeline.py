"""The whole asset graph through Dagster with the tiny models, on synthetic demo data."""

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from featuregen_assets.cli import main as cli
from featuregen_assets.core.search.default_mode import measured_default
from featuregen_assets.core.store import db, schema
from featuregen_assets.core.store.registry import latest_model
from featuregen_assets.core.text.query_graph import load_graph, text_encoder_graph
from featuregen_assets.core.training.alignment import AlignedTextEncoder
from featuregen_assets.core.training.decoder import FeatureDecoder
from featuregen_assets.core.training.splits import SPLITS, Split, leaked_test_images
from featuregen_assets.core.training.training_data import alignment_pairs
from featuregen_assets.demo.run import write_queries
from featuregen_assets.demo.scenes import generate_dataset, write_link_files
from featuregen_assets.demo.server import DemoServer
from featuregen_assets.launch.runs import materialize_unpartitioned, run_category
from featuregen_assets.research.sentence_encoder import bundled_minilm

CATEGORIES = ("cafe", "bank")
PER_CATEGORY = 8


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, pg_admin_url: str, tiny_models_dir: Path) -> Iterator[dict]:
    """Demo data served, downloaded, captioned and embedded for two categories."""
    root = tmp_path_factory.mktemp("pipeline")
    url = db.ensure_database(pg_admin_url, "pipeline_tests")
    with db.connection(url) as conn:
        schema.migrate(conn)
    env = {
        "FEATUREGEN_HOME": str(root / "home"),
        "FEATUREGEN_LINKS_DIR": str(root / "links"),
        "FEATUREGEN_DATABASE_URL": url,
        "FEATUREGEN_ALLOWED_NETWORKS": "127.0.0.1",
        "FEATUREGEN_MODELS": "tiny",
        "FEATUREGEN_MODELS_DIR": str(tiny_models_dir),
        "FEATUREGEN_PROGRESS": "log",
        "DAGSTER_HOME": str(root / "home" / "dagster"),
    }
    (root / "home" / "dagster").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        scenes = generate_dataset(root / "site", CATEGORIES, PER_CATEGORY, seed=3)
        with DemoServer(root / "site") as server, dg.DagsterInstance.get() as instance:
            write_link_files(scenes, server.base_url, root / "links")
            runs = {c: run_category(c, instance=instance) for c in CATEGORIES}
            yield {"url": url, "instance": instance, "runs": runs, "root": root, "scenes": scenes}


def _rows(url: str, query: str, *params) -> list[tuple]:
    with db.connection(url) as conn:
        return conn.execute(query, params).fetchall()


def test_category_runs_store_prompts_and_embeddings_joined_to_raw_images(pipeline) -> None:
    url = pipeline["url"]
    for category, result in pipeline["runs"].items():
        assert result.success, category
        evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert evaluations == {
            "failure_rate_below_threshold": True,
            "embeddings_complete_and_normalised": True,
            "prompts_complete": True,
            "text_vectors_complete_and_normalised": True,
        }
    [(images,)] = _rows(url, "SELECT count(DISTINCT image_id) FROM raw_images WHERE status='ok'")
    assert images == len(CATEGORIES) * PER_CATEGORY
    joined = _rows(
        url,
        "SELECT e.model, vector_dims(e.embedding), count(*) FROM image_embeddings e"
        " JOIN raw_images r USING (image_id) GROUP BY 1, 2",
    )
    assert [(dims, n) for _, dims, n in joined] == [(384, images)]
    assert joined[0][0].startswith("tiny/dinov2@")
    prompts = dict(
        _rows(
            url,
            "SELECT p.source, count(DISTINCT p.image_id) FROM image_prompts p"
            " JOIN raw_images r USING (image_id) WHERE btrim(p.prompt) <> '' GROUP BY 1",
        )
    )
    assert prompts == {"generated": images, "link_caption": images}
    texts = _rows(
        url,
        "SELECT e.source, e.random_weights, vector_dims(e.embedding), count(*)"
        " FROM prompt_embeddings e JOIN image_prompts p ON p.image_id = e.image_id"
        " AND p.model = e.prompt_model AND p.source = e.source GROUP BY 1, 2, 3 ORDER BY 1",
    )
    # the tiny captioner's prompts are marked: search leaves them out by default
    assert texts == [("generated", True, 384, images), ("link_caption", False, 384, images)]


def test_rematerialising_adds_nothing(pipeline) -> None:
    url = pipeline["url"]
    before = _rows(url, "SELECT image_id, model, created_at FROM image_embeddings ORDER BY 1")
    prompts_before = _rows(url, "SELECT count(*) FROM image_prompts")
    result = run_category("cafe", instance=pipeline["instance"])
    assert result.success
    for asset in ("image_embeddings", "image_prompts"):
        metadata = result.asset_materializations_for_node(asset)[0].metadata
        assert metadata["rows_written"].value == 0
        assert metadata["dagster/row_count"].value == PER_CATEGORY  # the partition's images
    metadata = result.asset_materializations_for_node("prompt_embeddings")[0].metadata
    assert metadata["rows_written"].value == 0
    assert metadata["dagster/row_count"].value == 2 * PER_CATEGORY  # a caption and a prompt
    assert (
        _rows(url, "SELECT image_id, model, created_at FROM image_embeddings ORDER BY 1") == before
    )
    assert _rows(url, "SELECT count(*) FROM image_prompts") == prompts_before


def test_a_changed_link_caption_is_the_one_prompt_rewritten(pipeline) -> None:
    url = pipeline["url"]
    [(image_id, old)] = _rows(
        url,
        "SELECT image_id, caption FROM raw_images WHERE category = 'cafe' AND status = 'ok'"
        " ORDER BY image_id LIMIT 1",
    )
    with db.connection(url) as conn:
        conn.execute(
            "UPDATE raw_images SET caption = 'a quiet cafe' WHERE image_id = %s", (image_id,)
        )
    try:
        selected = ["image_prompts", "prompt_embeddings"]
        result = run_category("cafe", select=selected, instance=pipeline["instance"])
        assert result.success
        metadata = result.asset_materializations_for_node("image_prompts")[0].metadata
        assert (metadata["rows_written"].value, metadata["generated"].value) == (1, 0)
        metadata = result.asset_materializations_for_node("prompt_embeddings")[0].metadata
        assert metadata["rows_written"].value == 1  # the changed caption, embedded again
        assert _rows(
            url,
            "SELECT prompt FROM image_prompts WHERE image_id = %s AND source = 'link_caption'",
            image_id,
        ) == [("a quiet cafe",)]
    finally:
        with db.connection(url) as conn:
            conn.execute("UPDATE raw_images SET caption = %s WHERE image_id = %s", (old, image_id))
        run_category("cafe", select=selected, instance=pipeline["instance"])


def test_vectors_of_a_failed_write_are_resumed_not_recomputed(pipeline) -> None:
    url = pipeline["url"]
    stored = _rows(url, "SELECT image_id, embedding FROM image_embeddings ORDER BY 1")
    with db.connection(url) as conn:
        conn.execute("DELETE FROM image_embeddings")
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON image_embeddings"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    try:
        failed = run_category("cafe", select=["image_embeddings"], instance=pipeline["instance"])
    finally:
        with db.connection(url) as conn:
            conn.execute("DROP TRIGGER refuse ON image_embeddings")
            conn.execute("DROP FUNCTION refuse()")
    assert not failed.success
    checkpoints = pipeline["root"] / "home" / "checkpoints" / "image_embeddings" / "cafe"
    assert list(checkpoints.rglob("*.rows"))

    result = run_category("cafe", select=["image_embeddings"], instance=pipeline["instance"])
    assert result.success
    metadata = result.asset_materializations_for_node("image_embeddings")[0].metadata
    assert (metadata["resumed"].value, metadata["embedded"].value) == (PER_CATEGORY, PER_CATEGORY)
    assert not list(checkpoints.rglob("*.rows"))
    bank = run_category("bank", select=["image_embeddings"], instance=pipeline["instance"])
    assert bank.success
    assert _rows(url, "SELECT image_id, embedding FROM image_embeddings ORDER BY 1") == stored


def test_two_categories_keep_their_own_caption_of_one_image(pipeline) -> None:
    url, instance = pipeline["url"], pipeline["instance"]
    [(image_id, path, caption)] = _rows(
        url,
        "SELECT image_id, path, caption FROM raw_images WHERE category = 'cafe'"
        " AND status = 'ok' ORDER BY image_id LIMIT 1",
    )
    with db.connection(url) as conn:  # the same image linked from bank, captioned otherwise
        conn.execute(
            "INSERT INTO raw_images (category, url, status, image_id, path, bytes, caption)"
            " VALUES ('bank', 'http://elsewhere.example/x.jpg', 'ok', %s, %s, %s, 'a bank hall')",
            (image_id, path, Path(path).stat().st_size),
        )
    try:
        assert run_category("bank", select=["image_prompts"], instance=instance).success
        assert _rows(
            url,
            "SELECT model, prompt FROM image_prompts WHERE image_id = %s"
            " AND source = 'link_caption' ORDER BY 1",
            image_id,
        ) == [("link-file:bank", "a bank hall"), ("link-file:cafe", caption)]
    finally:
        with db.connection(url) as conn:
            conn.execute("DELETE FROM raw_images WHERE url = 'http://elsewhere.example/x.jpg'")
            conn.execute(
                "DELETE FROM image_prompts WHERE model = 'link-file:bank' AND image_id = %s",
                (image_id,),
            )


def _warnings(instance: dg.DagsterInstance, run_id: str, text: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if text in e.user_message]


def test_a_damaged_file_is_named_skipped_and_restored_from_its_link(pipeline) -> None:
    url, instance = pipeline["url"], pipeline["instance"]
    [(image_id, path, link)] = _rows(
        url,
        "SELECT image_id, path, url FROM raw_images WHERE category = 'bank' AND status = 'ok'"
        " ORDER BY image_id LIMIT 1",
    )
    original = Path(path).read_bytes()
    with db.connection(url) as conn:
        conn.execute("DELETE FROM image_embeddings WHERE image_id = %s", (image_id,))
        conn.execute("DELETE FROM image_prompts WHERE image_id = %s", (image_id,))
        conn.execute(
            "DELETE FROM image_embeddings WHERE image_id IN (SELECT image_id FROM"
            " raw_images WHERE category = 'bank' ORDER BY image_id OFFSET 1 LIMIT 2)"
        )
    middle = len(original) // 2
    Path(path).write_bytes(original[:middle] + b"\0" * 200 + original[middle + 200 :])

    result = run_category("bank", select=["image_embeddings", "image_prompts"], instance=instance)
    assert result.success
    embedded = result.asset_materializations_for_node("image_embeddings")[0].metadata
    captioned = result.asset_materializations_for_node("image_prompts")[0].metadata
    assert embedded["embedded"].value == 2 and embedded["failed"].value == 0
    assert embedded["dagster/row_count"].value == PER_CATEGORY - 1  # all but the damaged one
    # Whichever step reads it first finds it damaged and takes it out of the other's work.
    assert embedded["damaged_files"].value + captioned["damaged_files"].value == 1
    assert _warnings(instance, result.run_id, f"{path}: changed on disk")
    assert _rows(url, "SELECT status FROM raw_images WHERE url = %s", link) == [("file_damaged",)]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["embeddings_complete_and_normalised"] is True
    assert _rows(url, "SELECT count(*) FROM image_embeddings WHERE image_id = %s", image_id) == [
        (0,)
    ]

    restored = run_category("bank", select=["raw_images"], instance=instance)
    assert restored.success
    assert Path(path).read_bytes() == original
    assert _rows(url, "SELECT status, image_id FROM raw_images WHERE url = %s", link) == [
        ("ok", image_id)
    ]


def test_training_assets_register_loadable_models_and_search_works(pipeline, capsys) -> None:
    url = pipeline["url"]
    [(path,)] = _rows(
        url,
        "SELECT path FROM raw_images r WHERE status = 'ok' AND EXISTS ("
        " SELECT 1 FROM image_embeddings e WHERE e.image_id = r.image_id) ORDER BY path LIMIT 1",
    )
    Path(path).write_bytes(Path(path).read_bytes()[:300])  # truncated: no longer its bytes
    result = materialize_unpartitioned(
        ["aligned_text_encoder", "decoder_model"],
        instance=pipeline["instance"],
        run_config={
            "ops": {
                "aligned_text_encoder": {
                    "config": {"prompt_source": "link_caption", "max_steps": 4, "batch_size": 8}
                },
                "decoder_model": {"config": {"max_steps": 4, "batch_size": 8}},
            }
        },
    )
    assert result.success  # the decoder trained without the truncated file, naming it
    assert _warnings(pipeline["instance"], result.run_id, f"{path}: changed on disk")
    encoder_meta = result.asset_materializations_for_node("aligned_text_encoder")[0].metadata
    assert 0 <= encoder_meta["recall@5"].value <= 1
    assert len(encoder_meta["loss_per_epoch"].value) >= 1
    decoder_meta = result.asset_materializations_for_node("decoder_model")[0].metadata
    assert "data:image/png;base64," in decoder_meta["reconstructions"].value

    with db.connection(url) as conn:
        encoder_record = latest_model(conn, "aligned_text_encoder")
        decoder_record = latest_model(conn, "decoder_model")
    encoder = AlignedTextEncoder.load(encoder_record.path)
    assert encoder.encode(["a red circle"]).shape == (1, 384)
    graph_dir, weights = text_encoder_graph(encoder_record.path)  # written as it was trained
    assert load_graph(graph_dir, weights).encode(["a red circle"]) == pytest.approx(
        encoder.encode(["a red circle"]), abs=1e-5
    )
    decoder = FeatureDecoder.load(decoder_record.path)
    assert decoder is not None and (decoder_record.path / "reconstructions.png").is_file()

    assert cli(["search", "a large red circle at the top left", "-k", "5", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 5
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert {"image_id", "rank", "score", "cosine", "url", "category", "prompt", "caption"} <= set(
        hits[0]
    )

    assert cli(["search", "a small blue square", "--category", "bank", "-k", "3", "--json"]) == 0
    filtered = json.loads(capsys.readouterr().out)
    assert len(filtered) == 3 and {h["category"] for h in filtered} == {"bank"}

    [(image,)] = _rows(url, "SELECT path FROM raw_images WHERE image_id = %s", hits[0]["image_id"])
    assert cli(["search", "--image", image, "-k", "2", "--json"]) == 0
    similar = json.loads(capsys.readouterr().out)
    assert similar[0]["image_id"] == hits[0]["image_id"]
    assert similar[0]["score"] == pytest.approx(1.0, abs=1e-4)

    assert cli(["search", "anything", "--category", "nowhere", "--json"]) == 2
    assert "known: bank, cafe" in capsys.readouterr().err

    # the research report on the recorded split, with the scenes' query sets
    split = Split.from_dict(json.loads((encoder_record.path / "split.json").read_text()))
    assert sum(len(split.of(s)) for s in SPLITS) == len(
        {*split.train, *split.validation, *split.test}
    )
    assert split.grouping == "caption_words"
    with db.connection(url) as conn:
        stored = alignment_pairs(conn, encoder_record.embedding_model, "link_caption")
    assert leaked_test_images(split, stored.texts, stored.image_ids) == 0
    home = pipeline["root"] / "home"
    write_queries(pipeline["scenes"], pipeline["root"] / "site", home / "demo" / "queries.jsonl")
    (home / "demo" / "site").mkdir()
    for folder in ("masks", "truth"):
        (home / "demo" / "site" / folder).symlink_to(pipeline["root"] / "site" / folder)
    variants = "lit,talk2dino,siglip,cls_mean,talk2dino_minilm"
    assert (
        cli(["report", "--variants", variants, "--variant-epochs", "1", "--decoder-epochs", "1"])
        == 0
    )
    printed = capsys.readouterr().out
    assert (
        f"inputs: the demo's under {home / 'demo'} (query_file, probe_masks, probe_records)"
        in printed
    )
    assert "## Headline" in printed and "trained_encoder" in printed
    [directory] = (home / "artifacts" / "research_report").iterdir()
    report = json.loads((directory / "report.json").read_text())
    methods = {r["method"].split(" ")[0] for r in report["rows"]}
    assert {
        "chance",
        "category_oracle",
        "tfidf_knn",
        "keyword_fts",
        "untrained_encoder",
        "trained_encoder",
        "talk2dino_encoder",
        "siglip_encoder",
        "cls_mean_encoder",
        "decoder",
        "decoder_from_patch_tokens",
        "decoder_from_stored_vector",
        "nearest_training_image",
        "lit_encoder",
    } <= methods
    minilm = "talk2dino_minilm_encoder" in methods
    assert minilm == (bundled_minilm() is not None)
    assert minilm or "talk2dino_minilm" in report["variants_not_run"]
    assert report["variant_epochs"] == 1 and report["token_decoder_epochs"] == 1
    assert any((home / "patch_grids").rglob("*.npy"))
    assert {r["query_set"] for r in report["rows"]} >= {"template", "paraphrase", "test_images"}
    served = {r["method"] for r in report["rows"] if r["method"].startswith("served mode: ")}
    assert served == {f"served mode: {m}" for m in ("caption", "image", "keyword", "hybrid")}
    # the search default follows the report's best served mode
    chosen = measured_default(directory / "report.json")
    assert chosen is not None
    assert cli(["search", "a small blue square", "-k", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"{chosen[0]} search")
    probes = {r["method"] for r in report["rows"] if r["query_set"] == "segmentation_test_images"}
    assert {
        "linear probe: patch tokens",
        "mlp 64 probe: positive control: true class shares + noise",
        "ceiling: linear probe on the true class shares",
    } <= probes
    boxes = {
        r["method"]
        for r in report["rows"]
        if r["metric"] == "box_recall@0.5" and r["ci_low"] <= r["value"] <= r["ci_high"]
    }
    assert {
        "linear probe: patch tokens",
        "linear probe: positive control: true class shares + noise",
    } <= boxes
    attributes = {
        (r["method"], r["metric"])
        for r in report["rows"]
        if r["query_set"] == "attribute_test_images"
    }
    assert {
        ("linear probe: stored vector", "colour_at_place"),
        ("linear probe: positive control: true attributes + noise", "shape_at_place"),
        ("chance", "category"),
    } <= attributes
    assert "truth_readout" in methods
    decoded = {r["method"] for r in report["rows"] if r["metric"] == "psnr_db"}
    assert {
        "positive control: decoder from the 16 px original (1 epochs)",
        "ceiling of the control: the 16 px original",
    } <= decoded
    assert "What the stored vectors hold" in (directory / "report.md").read_text()
    paired = [r for r in report["rows"] if r["task"] == "paired_difference"]
    assert any(r["method"].startswith("trained_encoder − ") for r in paired)
    assert all(r["ci_low"] <= r["value"] <= r["ci_high"] for r in paired)
    assert "## Paired differences" in (directory / "report.md").read_text()
    answers = (directory / "report.md").read_text().split("## Answers")[1].lstrip()
    assert answers.startswith("- Weights: the image model `tiny/dinov2")
    assert "pipeline validation on random weights; no finding about DINOv2" in answers
    assert report["weights"]["embedding_model"]["pretrained"] is False
    assert any(m.startswith("learned ceiling") for m in {r["method"] for r in report["rows"]})
    assert report["split_hashes"]["test"] and (directory / "report.md").is_file()


def test_train_from_the_cli_prints_a_line_per_epoch_and_the_held_out_figures(
    pipeline, capsys
) -> None:
    args = ["--epochs", "3", "--batch-size", "8", "--prompt-source", "link_caption"]
    assert cli(["train", "text-encoder", *args]) == 0
    out, err = capsys.readouterr()
    epochs = [line for line in err.splitlines() if line.startswith("aligned_text_encoder: epoch")]
    assert [line.split(":")[1].strip() for line in epochs] == [
        "epoch 1/3",
        "epoch 2/3",
        "epoch 3/3",
    ]
    assert all(
        "loss" in line and "validation recall@5" in line and "left" in line for line in epochs
    )
    assert "PIPELINE_START" not in err and "STEP_START" not in err  # no Dagster events
    [summary] = [line for line in out.splitlines() if line.startswith("aligned_text_encoder ")]
    assert "recall@5" in summary and "median_rank" in summary

    assert cli(["run", "--select", "decoder_model"]) == 0  # the trained models need no category
    err = capsys.readouterr().err
    assert "decoder_model: epoch 1/150: mse" in err and "validation PSNR" in err
    stopped = "decoder_model: stopping at epoch" in err or "decoder_model: epoch 150/150" in err
    assert stopped and "held-out PSNR" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "decoder", "--recipe", "lit"],
            "--recipe: only for featuregen train text-encoder",
        ),
        (["train", "text-encoder", "--epochs", "0"], "must be above 0: 0"),
        (["train", "unet"], "invalid choice: 'unet'"),
        (["run", "--select", "decoder_model", "--category", "cafe"], "leave out --category"),
        (["run", "--select", "raw_images"], "--category is required"),
        (["run", "--category", "cafe", "--select", "nothing"], "invalid choice: 'nothing'"),
        (["report", "--decoder-epochs", "-1"], "--decoder-epochs: must be above 0: -1"),
        (["report", "--variant-epochs", "0"], "--variant-epochs: must be above 0: 0"),
    ],
)
def test_bad_run_and_train_arguments_are_one_line_errors(argv, message, capsys) -> None:
    try:
        status = cli(argv)
    except SystemExit as exit_info:
        status = exit_info.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    command = " ".join(["featuregen", argv[0]])
    assert err[0].startswith("error: ") and err[0].endswith(f"(see {command} --help)"), err
