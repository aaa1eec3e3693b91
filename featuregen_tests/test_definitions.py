"""The wiring alone, in seconds: a mistake in assets, checks, jobs, sensors or resources fails
here before any run."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from featuregen_assets import definitions

defs = definitions.defs()  # what Dagster's loader calls


def test_definitions_load_with_every_resource_they_need() -> None:
    dg.Definitions.validate_loadable(defs)
    assert {job.name for job in defs.resolve_all_job_defs()} >= {"category_pipeline"}
    assert {sensor.name for sensor in defs.sensors} == {
        "link_file_sensor",
        "featuregen_automation",
    }


def test_the_graph_is_the_one_the_readme_draws() -> None:
    graph = defs.resolve_asset_graph()
    edges = {
        (parent.to_user_string(), key.to_user_string())
        for key in graph.get_all_asset_keys()
        for parent in graph.get(key).parent_keys
    }
    assert edges == {
        ("raw_images", "image_embeddings"),
        ("raw_images", "image_prompts"),
        ("image_prompts", "prompt_embeddings"),
        ("image_embeddings", "aligned_text_encoder"),
        ("image_prompts", "aligned_text_encoder"),
        ("image_embeddings", "decoder_model"),
        ("aligned_text_encoder", "research_report"),
        ("decoder_model", "research_report"),
        ("image_embeddings", "research_report"),
        ("image_prompts", "research_report"),
    }
    checked = {check.asset_key.to_user_string() for check in graph.asset_check_keys}
    assert checked == {"raw_images", "image_embeddings", "image_prompts", "prompt_embeddings"}
    pipeline = defs.resolve_job_def("category_pipeline")
    assert {key.to_user_string() for key in pipeline.asset_layer.selected_asset_keys} == {
        "raw_images",
        "image_embeddings",
        "image_prompts",
        "prompt_embeddings",
    }


def test_dagster_loads_the_code_location_that_importing_only_declares(tmp_path) -> None:
    """`dagster dev` and every step load the module named in workspace.yaml; importing it
    builds nothing (`defs` is a `@dg.definitions` function Dagster calls)."""
    assert not isinstance(definitions.defs, dg.Definitions)
    root = Path(definitions.__file__).parents[1]
    validated = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate"]
        + ["-w", str(root / "workspace.yaml")],
        cwd=root,
        env={**os.environ, "FEATUREGEN_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    said = validated.stdout + validated.stderr
    assert validated.returncode == 0, said[-2000:]
    assert "Validation successful for code location featuregen." in said
