"""Hub models that are neither local nor reachable fail fast, saying what to do."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from featuregen_assets.core.vision.hub import ModelUnavailable, ensure_available
from featuregen_assets.resources.models import ModelsResource
from featuregen_assets.settings import Settings

MISSING = "featuregen-tests/no-such-model"


@pytest.fixture
def hub(monkeypatch):
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
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield
    server.shutdown()


def test_a_local_directory_needs_no_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    ensure_available(str(tmp_path))


def test_a_model_the_hub_has_passes(hub):
    ensure_available("featuregen-tests/present")


def test_an_unknown_id_is_named_as_such(hub):
    with pytest.raises(ModelUnavailable, match="check the id"):
        ensure_available(MISSING)


def test_an_unreachable_hub_fails_at_once_with_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # connection refused
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.perf_counter()
    with pytest.raises(ModelUnavailable, match="FEATUREGEN_MODELS=tiny") as error:
        ensure_available(MISSING)
    assert time.perf_counter() - started < 5
    assert "cannot be reached" in str(error.value)


def test_offline_mode_asks_no_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE"):
        ensure_available(MISSING)


def test_the_models_resource_checks_real_models_before_loading(monkeypatch, tmp_path):
    monkeypatch.setenv("FEATUREGEN_HOME", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelUnavailable, match=MISSING):
        ModelsResource(settings=Settings.from_env(), profile="real", dinov2=MISSING).spec("dinov2")
