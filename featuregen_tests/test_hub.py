"""Hub models that are neither local nor reachable fail fast, saying what to do."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from featuregen_assets.core.vision.hub import HubAccess, ModelUnavailable, ensure_available
from featuregen_assets.resources.models import ModelsResource
from featuregen_assets.settings import ROLE_VARIABLES, Settings

MISSING = "featuregen-tests/no-such-model"
UNREACHABLE = HubAccess("http://127.0.0.1:9")  # nothing listens there: connection refused


@pytest.fixture
def hub() -> HubAccess:
    """A loopback 'hub' answering /api/models/<id>: 200 for known ids, 401 for others."""
    known = {"featuregen-tests/present"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            repo = self.path.removeprefix("/api/models/")
            self.send_response(200 if repo in known else 401)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield HubAccess(f"http://127.0.0.1:{server.server_port}")
    server.shutdown()


def test_a_local_directory_needs_no_hub(tmp_path):
    ensure_available(str(tmp_path), UNREACHABLE, "FEATUREGEN_IMAGE_EMBEDDER")


def test_a_model_the_hub_has_passes(hub):
    ensure_available("featuregen-tests/present", hub, "FEATUREGEN_IMAGE_EMBEDDER")


def test_an_unknown_id_is_named_as_such(hub):
    with pytest.raises(ModelUnavailable, match="check the id"):
        ensure_available(MISSING, hub, "FEATUREGEN_IMAGE_EMBEDDER")


def test_an_unreachable_hub_fails_at_once_with_what_to_do():
    started = time.perf_counter()
    with pytest.raises(ModelUnavailable, match="FEATUREGEN_MODELS=tiny") as error:
        ensure_available(MISSING, UNREACHABLE, "FEATUREGEN_IMAGE_EMBEDDER")
    assert time.perf_counter() - started < 5
    assert "cannot be reached" in str(error.value)


def test_offline_mode_asks_no_hub(hub):
    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE"):
        ensure_available(
            "featuregen-tests/present",
            HubAccess(hub.endpoint, offline=True),
            "FEATUREGEN_IMAGE_EMBEDDER",
        )


def test_the_models_resource_checks_real_models_before_loading(tmp_path):
    settings = Settings.from_env(
        {"FEATUREGEN_HOME": str(tmp_path), "HF_ENDPOINT": UNREACHABLE.endpoint}
    )
    with pytest.raises(ModelUnavailable, match=MISSING):
        ModelsResource(settings=settings, profile="real", chosen={"image_embedder": MISSING}).spec(
            "image_embedder"
        )


@pytest.mark.parametrize(
    ("role", "setting"),
    [
        ("image_embedder", "FEATUREGEN_IMAGE_EMBEDDER"),
        ("captioner", "FEATUREGEN_CAPTIONER"),
        ("text_tower", "FEATUREGEN_TEXT_TOWER"),
        ("sentence_encoder", "FEATUREGEN_SENTENCE_ENCODER"),
    ],
)
def test_each_model_is_picked_by_its_own_setting_which_its_error_names(
    role, setting, monkeypatch, tmp_path
):
    monkeypatch.setenv("FEATUREGEN_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(setting, MISSING)
    with pytest.raises(ModelUnavailable) as error:
        ModelsResource(settings=Settings.from_env(), profile="real").spec(role)
    message = str(error.value)
    assert MISSING in message and f"point {setting} at a local copy" in message
    assert not any(var in message for var in ROLE_VARIABLES.values() if var != setting)
    local = tmp_path / "local-copy"
    local.mkdir()
    monkeypatch.setenv(setting, str(local))
    assert ModelsResource(settings=Settings.from_env(), profile="real").spec(
        role
    ).name_or_path == str(local)


def test_the_bundled_sentence_encoder_needs_no_hub_and_others_are_checked_in_both_profiles(
    tmp_path,
):
    settings = Settings.from_env({"FEATUREGEN_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    for profile in ("real", "tiny"):
        spec = settings.model("sentence_encoder", profile)
        assert spec.name_or_path == "all-MiniLM-L6-v2"
        with pytest.raises(ModelUnavailable, match="FEATUREGEN_SENTENCE_ENCODER"):
            settings.model("sentence_encoder", profile, MISSING)
