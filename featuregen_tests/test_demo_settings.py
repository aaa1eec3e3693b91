"""The demo's settings: loopback admitted, model steps on one thread without loader workers."""

from __future__ import annotations

from featuregen_assets.demo.run import LOOPBACK, demo_settings
from featuregen_assets.settings import Settings


def test_demo_model_steps_take_one_thread_and_no_loader_workers(tmp_path):
    settings = demo_settings(Settings.from_env({"FEATUREGEN_HOME": str(tmp_path)}))
    assert settings.compute.torch_threads == 1
    assert settings.compute.num_workers == 0
    assert LOOPBACK in settings.download.allowed_networks


def test_the_users_threads_and_workers_win(tmp_path):
    environ = {
        "FEATUREGEN_HOME": str(tmp_path),
        "FEATUREGEN_TORCH_THREADS": "2",
        "FEATUREGEN_NUM_WORKERS": "3",
    }
    settings = demo_settings(Settings.from_env(environ))
    assert (settings.compute.torch_threads, settings.compute.num_workers) == (2, 3)
