"""Model profiles: real ids, deterministic and race-safe tiny builds, model keys."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModel, AutoTokenizer, Qwen2VLForConditionalGeneration

from featuregen_assets.core.vision.model_profiles import (
    TINY_ROLES,
    TinyModelMissing,
    model_key,
    resolve_model,
    resolve_models,
    tiny_dir,
)
from featuregen_assets.demo.scenes import CATEGORY_PHRASES, COLOURS, POSITIONS, SHAPES, SIZES
from featuregen_assets.demo.tiny_models import (
    QWEN2VL_SPECIAL_TOKENS,
    TINY_WORDS,
    ensure_tiny_models,
)
from featuregen_assets.settings import Settings


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    ensure_tiny_models(home)
    return home


def test_real_profile_names_hub_ids_and_builds_nothing(tmp_path):
    chosen = {"image_embedder": "facebook/dinov2-small-with-registers"}
    specs = resolve_models("real", tmp_path, chosen)
    assert specs["image_embedder"].name_or_path == "facebook/dinov2-small-with-registers"
    assert specs["captioner"].model_id == "Qwen/Qwen2-VL-2B-Instruct"
    assert specs["text_tower"].model_id == "openai/clip-vit-base-patch32"
    assert specs["sentence_encoder"].model_id == "all-MiniLM-L6-v2"
    assert not (tmp_path / "models").exists()


def test_tiny_builds_keep_the_names_stored_rows_and_built_homes_hold(tiny_home):
    specs = resolve_models("tiny", tiny_home, {"sentence_encoder": "/elsewhere/minilm"})
    ids = {role: spec.model_id for role, spec in specs.items()}
    assert ids == {
        "image_embedder": "tiny/dinov2",
        "captioner": "tiny/qwen2vl",
        "text_tower": "tiny/clip_text",
        "sentence_encoder": "/elsewhere/minilm",  # no tiny build: the setting serves both
    }
    assert specs["image_embedder"].name_or_path == str(tiny_home / "tiny" / "dinov2")


def test_profile_from_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the default home: empty here, not the checkout's demo home
    monkeypatch.delenv("FEATUREGEN_HOME", raising=False)
    monkeypatch.delenv("FEATUREGEN_MODELS", raising=False)
    assert Settings.from_env().models == "real"
    monkeypatch.setenv("FEATUREGEN_MODELS", "tiny")
    assert Settings.from_env().models == "tiny"
    monkeypatch.setenv("FEATUREGEN_MODELS", "huge")
    with pytest.raises(ValueError, match="FEATUREGEN_MODELS"):
        Settings.from_env()
    with pytest.raises(ValueError, match="profile"):
        resolve_models("huge", Path("."))


def test_tiny_build_is_deterministic(tiny_home, tmp_path):
    ensure_tiny_models(tmp_path)
    for role in TINY_ROLES:
        spec = resolve_model("tiny", role, tmp_path)
        assert tree_hash(Path(spec.name_or_path)) == tree_hash(tiny_dir(role, tiny_home))


_RACE = """
import sys, time
from pathlib import Path
from featuregen_assets.demo.tiny_models import ensure_tiny
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
print(ensure_tiny("image_embedder", Path(sys.argv[1])))
"""


def test_tiny_build_is_safe_under_concurrent_processes(tiny_home, tmp_path):
    go = tmp_path / "go"
    home = tmp_path / "home"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, str(home), str(go)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    time.sleep(3)  # let all three import and wait at the start line
    go.touch()
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert set(outs) == {str(tiny_dir("image_embedder", home))}
    left = [p.name for p in (home / "tiny").iterdir() if not p.name.endswith(".lock")]
    assert left == ["dinov2"]
    assert tree_hash(tiny_dir("image_embedder", home)) == tree_hash(
        tiny_dir("image_embedder", tiny_home)
    )


def test_tiny_models_load_like_hub_models(tiny_home):
    specs = resolve_models("tiny", tiny_home)
    dinov2 = AutoModel.from_pretrained(specs["image_embedder"].name_or_path)
    assert type(dinov2).__name__ == "Dinov2Model"
    assert (dinov2.config.hidden_size, dinov2.config.num_hidden_layers) == (384, 2)
    assert (dinov2.config.patch_size, dinov2.config.image_size) == (14, 112)

    qwen = Qwen2VLForConditionalGeneration.from_pretrained(specs["captioner"].name_or_path)
    tok = AutoTokenizer.from_pretrained(specs["captioner"].name_or_path)
    assert qwen.config.text_config.vocab_size == len(tok)
    assert qwen.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert all(tok.convert_tokens_to_ids(t) != tok.unk_token_id for t in QWEN2VL_SPECIAL_TOKENS)
    text = tok.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")

    clip = AutoModel.from_pretrained(specs["text_tower"].name_or_path)
    assert type(clip).__name__ == "CLIPTextModel"
    ctok = AutoTokenizer.from_pretrained(specs["text_tower"].name_or_path)
    ids = ctok("A large red circle at the top left, in a supermarket")["input_ids"]
    assert ids[0] == ctok.bos_token_id and ids[-1] == ctok.eos_token_id == clip.config.eos_token_id
    assert ctok.unk_token_id not in ids


def test_model_key_names_model_and_hashes_config(tiny_home):
    config = AutoConfig.from_pretrained(tiny_dir("image_embedder", tiny_home)).to_diff_dict()
    key = model_key("tiny/dinov2", config)
    assert re.fullmatch(r"tiny/dinov2@[0-9a-f]{8}", key)
    assert model_key("tiny/dinov2", dict(reversed(list(config.items())))) == key
    assert model_key("tiny/dinov2", {**config, "hidden_size": 65}) != key
    assert model_key("other", config) != key


def test_a_tiny_model_not_built_is_one_clear_error(tmp_path):
    with pytest.raises(TinyModelMissing, match="featuregen models build-tiny"):
        resolve_model("tiny", "image_embedder", tmp_path)


def test_the_tiny_vocabulary_holds_every_word_of_the_demos_captions():
    words = {*CATEGORY_PHRASES, *COLOURS, *SHAPES, *SIZES}
    words |= {word for phrase in CATEGORY_PHRASES.values() for word in phrase.split()}
    words |= {word for position in POSITIONS for word in position.split()}
    assert words <= set(TINY_WORDS)
