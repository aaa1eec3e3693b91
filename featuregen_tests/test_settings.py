"""The one settings object: what each variable sets, and docs/configuration.md's table."""

import ast
import logging
from pathlib import Path

import pytest

import featuregen_assets
import featuregen_assets.settings as settings_module
from featuregen_assets.core.vision.hub import HubAccess
from featuregen_assets.core.vision.model_profiles import ROLES
from featuregen_assets.settings import (
    ROLE_VARIABLES,
    SECRET_VARIABLES,
    VARIABLES,
    Settings,
    configuration_table,
)

PACKAGE = Path(featuregen_assets.__file__).parent


def test_documented_configuration_table_is_the_settings_table() -> None:
    page = (PACKAGE.parent / "docs" / "configuration.md").read_text()
    assert configuration_table() in page


def test_unset_or_empty_variables_give_the_defaults_with_paths_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default home: empty here, not the checkout's demo home
    settings = Settings.from_env({"FEATUREGEN_BATCH_SIZE": "", "FEATUREGEN_MODELS": "  "})
    assert settings.compute == Settings().compute
    assert settings.models == "real"
    assert settings.home == Path(".featuregen").resolve()
    assert settings.links_dir.is_absolute()


def test_variables_fill_their_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # Settings.from_env({}) below: an empty default home
    settings = Settings.from_env(
        {
            "FEATUREGEN_HOME": str(tmp_path),
            "FEATUREGEN_MODELS": "Tiny",
            "FEATUREGEN_BATCH_SIZE": "8",
            "FEATUREGEN_NUM_WORKERS": "0",
            "FEATUREGEN_GPU_JPEG_SHARE": "0.5",
            "FEATUREGEN_POOLING": "cls+mean",
            "FEATUREGEN_CHECKPOINT_EVERY_S": "0",
            "FEATUREGEN_MAX_FAILURE_RATE": "0.1",
            "FEATUREGEN_ALLOWED_NETWORKS": "127.0.0.1, 10.0.0.0/8",
            "FEATUREGEN_DOWNLOAD_CONCURRENCY": "7",
            "FEATUREGEN_DOWNLOAD_RESPECT_ROBOTS": "false",
            "FEATUREGEN_DOWNLOAD_TOTAL_TIMEOUT": "1.5",
            "FEATUREGEN_PROGRESS": "bar",
            "HF_ENDPOINT": "http://hub.internal",
            "HF_HUB_OFFLINE": "1",
            "HF_TOKEN": "hf_secret",
        }
    )
    assert settings.home == tmp_path
    assert settings.models == "tiny"
    assert (settings.compute.batch_size, settings.compute.num_workers) == (8, 0)
    assert settings.compute.gpu_jpeg_share == 0.5
    assert settings.embedding.pooling == "cls+mean"
    assert (settings.checkpoint_every_s, settings.max_failure_rate) == (0.0, 0.1)
    assert settings.download.allowed_networks == ("127.0.0.1", "10.0.0.0/8")
    download = settings.download
    assert (download.concurrency, download.respect_robots, download.total_timeout) == (
        7,
        False,
        1.5,
    )
    assert settings.progress_bar
    assert settings.hub == HubAccess("http://hub.internal", offline=True, token="hf_secret")
    assert "hf_secret" not in repr(settings)
    # Settings travel to a Ray step or a pod as variables: every value comes back as it was.
    assert Settings.from_env(settings.to_env()) == settings
    assert Settings.from_env(Settings().to_env()) == Settings.from_env({})
    assert set(settings.to_env(secrets=False)) == set(settings.to_env()) - SECRET_VARIABLES


def test_a_bad_value_names_its_variable() -> None:
    with pytest.raises(ValueError, match="FEATUREGEN_PROGRESS"):
        Settings.from_env({"FEATUREGEN_PROGRESS": "fancy"})
    with pytest.raises(ValueError, match="invalid literal"):
        Settings.from_env({"FEATUREGEN_BATCH_SIZE": "many"})


def test_every_variable_names_a_setting() -> None:
    for variable in VARIABLES:
        value: object = Settings()
        for name in variable.path.split("."):
            value = getattr(value, name)  # raises for a path that names nothing


def test_each_model_role_has_one_name_for_its_setting_and_variable() -> None:
    assert set(ROLE_VARIABLES) == set(ROLES)
    for role, variable in ROLE_VARIABLES.items():
        assert variable == f"FEATUREGEN_{role.upper()}"
        assert getattr(Settings(), role) == ROLES[role].real_id


def test_a_renamed_variable_still_works_saying_once_what_replaces_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(settings_module, "_WARNED", set())
    environ = {"FEATUREGEN_HOME": str(tmp_path), "FEATUREGEN_DINOV2": "facebook/dinov2-small"}
    with caplog.at_level(logging.WARNING, logger="featuregen_assets.settings"):
        assert Settings.from_env(environ).image_embedder == "facebook/dinov2-small"
        assert Settings.from_env(environ).image_embedder == "facebook/dinov2-small"
    assert caplog.messages == [
        "FEATUREGEN_DINOV2 is deprecated: set FEATUREGEN_IMAGE_EMBEDDER instead"
    ]
    newer = {**environ, "FEATUREGEN_IMAGE_EMBEDDER": "facebook/dinov2-large"}
    assert Settings.from_env(newer).image_embedder == "facebook/dinov2-large"
    old = {"FEATUREGEN_HOME": str(tmp_path), "FEATUREGEN_SENTENCE_MODEL": str(tmp_path)}
    assert Settings.from_env(old).sentence_encoder == str(tmp_path)
    assert "`FEATUREGEN_DINOV2`, its deprecated old name" in configuration_table()


def _environment_reads(path: Path) -> set[str]:
    """What `path` reads from `os.environ`: variable names, or "?" for a computed one."""
    reads = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            environ = isinstance(target, ast.Attribute) and target.attr == "environ"
            if (environ and node.func.attr in ("get", "setdefault", "pop")) or (
                node.func.attr == "getenv"
            ):
                arg = node.args[0] if node.args else None
                reads.add(arg.value if isinstance(arg, ast.Constant) else "?")
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "environ"
        ):
            reads.add(node.slice.value if isinstance(node.slice, ast.Constant) else "?")
    return reads


def test_only_the_settings_read_featuregen_variables() -> None:
    reads = {str(p.relative_to(PACKAGE)): _environment_reads(p) for p in PACKAGE.rglob("*.py")}
    featuregen = {
        path: names for path, names in reads.items() if any("FEATUREGEN_" in n for n in names)
    }
    assert featuregen == {}
    core = {path for path, names in reads.items() if path.startswith("core/") and names}
    assert core == set()


def test_a_home_remembers_the_model_profile_it_was_built_with(tmp_path: Path) -> None:
    environ = {"FEATUREGEN_HOME": str(tmp_path / "home")}
    assert Settings.from_env(environ).models == "real"  # nothing recorded yet
    Settings.from_env({**environ, "FEATUREGEN_MODELS": "tiny"}).remember_models()
    assert Settings.from_env(environ).models == "tiny"  # e.g. every command after the demo
    assert Settings.from_env({**environ, "FEATUREGEN_MODELS": "real"}).models == "real"
    Settings.from_env({**environ, "FEATUREGEN_MODELS": "real"}).remember_models()
    assert Settings.from_env(environ).models == "tiny"  # the first profile stays recorded


def test_a_cli_run_records_the_profile_of_its_home(fg_env: Path, monkeypatch) -> None:
    from featuregen_assets.cli import main

    (fg_env.parent / "links" / "empty.txt").write_text("")
    assert main(["run", "--category", "empty", "--select", "raw_images"]) == 0
    monkeypatch.delenv("FEATUREGEN_MODELS")
    assert Settings.from_env().models == "tiny"
