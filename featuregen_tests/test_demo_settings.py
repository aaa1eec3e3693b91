"""The demo's settings: loopback admitted, model steps on one thread without loader workers;
the commands it suggests at the end, as the user can type them."""

from __future__ import annotations

from featuregen_assets.demo.run import LOOPBACK, demo_settings, featuregen_command
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


def test_the_suggested_command_is_the_installed_featuregen(tmp_path, monkeypatch):
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "featuregen").write_text("#!/bin/sh\n")
    (bin_dir / "featuregen").chmod(0o755)
    python = str(bin_dir / "python")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a fresh clone's shell: .venv not activated
    assert featuregen_command(python, cwd=tmp_path) == ".venv/bin/featuregen"
    assert featuregen_command(python, cwd=tmp_path / "elsewhere") == str(bin_dir / "featuregen")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")  # activated
    assert featuregen_command(python, cwd=tmp_path) == "featuregen"
