"""Where steps run: the Ray and Kubernetes requests in the assets' op tags, the executor that
the settings pick, and a model step's pod spec as dagster-k8s builds it (no cluster)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)

from featuregen_assets.cli import main as cli
from featuregen_assets.core.vision.settings import ComputeSettings
from featuregen_assets.definitions import build_defs
from featuregen_assets.launch import executors, placement
from featuregen_assets.launch.runs import reconstructable_pipeline
from featuregen_assets.settings import Settings, variable_names

MODEL_STEPS = (
    "image_prompts",
    "image_embeddings",
    "prompt_embeddings",
    "aligned_text_encoder",
    "decoder_model",
    "research_report",
)
REPO = Path(__file__).parents[1]
ON_A_GPU = build_defs(Settings(compute=ComputeSettings(device="auto")))


def _op_tags(asset: str, defs: dg.Definitions = ON_A_GPU) -> dict[str, str]:
    return dict(defs.get_assets_def(asset).op.tags)


@pytest.mark.parametrize("asset", MODEL_STEPS)
def test_a_model_step_asks_ray_for_a_gpu(asset: str) -> None:
    request = json.loads(_op_tags(asset)[placement.RAY_TAG])
    assert request == {"num_cpus": 1, "num_gpus": 1}


def test_the_download_step_asks_ray_for_one_cpu_and_no_gpu() -> None:
    assert json.loads(_op_tags("raw_images")[placement.RAY_TAG]) == {"num_cpus": 1, "num_gpus": 0}


def test_placing_keeps_the_steps_pool_and_the_job() -> None:
    assert ON_A_GPU.get_assets_def("image_embeddings").op.pool == "gpu"
    assert ON_A_GPU.get_assets_def("raw_images").op.pool is None
    dg.Definitions.validate_loadable(ON_A_GPU)


def test_on_the_cpu_a_model_step_asks_for_no_gpu() -> None:
    on_the_cpu = build_defs(Settings(compute=ComputeSettings(device="cpu")))
    tags = _op_tags("image_embeddings", on_the_cpu)
    assert json.loads(tags[placement.RAY_TAG])["num_gpus"] == 0
    assert placement.GPU_RESOURCE not in tags[placement.K8S_TAG]


@pytest.mark.parametrize("asset", MODEL_STEPS)
def test_a_model_steps_pod_has_a_gpu_limit(asset: str) -> None:
    """The pod dagster-k8s's step executor would create for the step, from its op tags."""
    user_config = get_user_defined_k8s_config(_op_tags(asset))
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(
            job_image="registry.example.com/featuregen:0.1.0",
            dagster_home="/opt/dagster/dagster_home",
            instance_config_map="featuregen-dagster-instance",
        ),
        args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{asset.replace('_', '-')}",
        user_defined_k8s_config=user_config,
    )
    [container] = job.spec.template.spec.containers
    assert container.resources.limits[placement.GPU_RESOURCE] == "1"
    assert container.resources.requests["cpu"] == "1"


def test_the_download_steps_pod_has_no_gpu() -> None:
    user_config = get_user_defined_k8s_config(_op_tags("raw_images"))
    assert placement.GPU_RESOURCE not in user_config.container_config["resources"]["limits"]


def test_the_executor_follows_the_settings() -> None:
    assert executors.executor_for(Settings()) is None  # Dagster's default
    assert executors.executor_for(Settings(executor="k8s")).name == "k8s"
    assert build_defs(Settings(executor="k8s")).executor.name == "k8s"
    with pytest.raises(ValueError, match="FEATUREGEN_EXECUTOR='spark'"):
        Settings.from_env({"FEATUREGEN_EXECUTOR": "spark"})


def test_the_ray_executor_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dagster_ray", None)  # as if not installed
    with pytest.raises(executors.ExecutorUnavailable, match=r"pip install 'featuregen\[ray\]'"):
        executors.executor_for(Settings(executor="ray"))


def test_a_ray_step_gets_the_launching_settings_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What only the Settings object holds (the CLI's and the demo's values) reaches a step:
    in its environment (dagster-ray's env_vars) and in the job it rebuilds (the run's origin,
    which holds no secret)."""
    monkeypatch.delenv("FEATUREGEN_MODELS", raising=False)
    settings = dataclasses.replace(
        Settings.from_env({}),
        home=tmp_path,
        models="tiny",
        models_dir=tmp_path / "models",
        executor="ray",
        ray_address="http://head:8265",
        database_url="postgresql://user:secret@db/featuregen",
        serve_token="serve-secret",
    )
    executor = executors.executor_for(settings)
    assert isinstance(executor, dg.ExecutorDefinition) and executor.name == "ray"
    environment = executors.step_environment(settings)
    assert {
        "FEATUREGEN_MODELS=tiny",
        f"FEATUREGEN_MODELS_DIR={tmp_path / 'models'}",
        "FEATUREGEN_DATABASE_URL=postgresql://user:secret@db/featuregen",
        "DAGSTER_HOME",
    } <= set(environment)
    assert not any(item.startswith("RAY_ADDRESS") for item in environment)  # Ray sets its own
    assert not any(item.startswith("FEATUREGEN_SERVE_TOKEN") for item in environment)

    job = reconstructable_pipeline(settings)
    environ = dict(job.repository.pointer.reconstructable_kwargs)["environ"]
    assert "secret" not in json.dumps(environ)
    assert Settings.from_env(environ) == dataclasses.replace(
        settings, database_url=None, serve_token=None
    )
    assert job.get_definition().executor_def.name == "ray"  # rebuilt from those settings


def test_featuregen_run_with_an_unknown_executor_is_one_line(
    fg_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (fg_env.parent / "links" / "cafe.txt").write_text("# none yet\n")
    monkeypatch.setenv("FEATUREGEN_EXECUTOR", "spark")
    assert cli(["run", "--category", "cafe"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: FEATUREGEN_EXECUTOR='spark': expected one of")


def test_featuregen_run_on_a_ray_cluster_that_does_not_answer_is_one_line(
    fg_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (fg_env.parent / "links" / "cafe.txt").write_text("# none yet\n")
    monkeypatch.setenv("FEATUREGEN_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:9")  # the discard port: nothing there
    assert cli(["run", "--category", "cafe"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: the Ray cluster at http://127.0.0.1:9 does not answer: ")


def test_the_documented_ray_run_launcher_loads_and_forwards_every_setting() -> None:
    """deploy/ray/run_launcher.yaml is a run launcher Dagster's instance loads (dagster-ray's
    RayRunLauncher), copying every featuregen variable into the run's Ray job."""
    from dagster_ray import RayRunLauncher

    block = yaml.safe_load((REPO / "deploy" / "ray" / "run_launcher.yaml").read_text())
    with dg.instance_for_test(overrides=block) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, RayRunLauncher)
        assert launcher.address == "http://head:8265" and launcher.num_cpus == 1
        forwarded = {*variable_names(), "DAGSTER_HOME", "PATH"} - {"FEATUREGEN_SERVE_TOKEN"}
        assert forwarded <= set(launcher.env_vars)
        assert "FEATUREGEN_SERVE_TOKEN" not in launcher.env_vars  # no run reads it


def test_the_local_ray_head_is_reached_with_its_token(tmp_path: Path) -> None:
    """With a Ray token on the machine (~/.ray/auth_token) `ray start` turns authentication on;
    the run's own job-submission clients then send the token too (RAY_AUTH_MODE=token), as
    Ray's own check decides (they were refused: "Authentication token is missing"). In a
    process of its own: Ray keeps the token it loaded for the rest of a process."""
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("a" * 32)
    check = (
        "import os\n"
        "from featuregen_assets.launch import executors\n"
        "executors.authenticate_as_ray_start_does()  # as the Ray executor does first\n"
        "print(os.environ.get('RAY_AUTH_MODE'))\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    result = subprocess.run(
        [sys.executable, "-c", check],
        env={**environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == ["token"], result.stderr


NO_GPU_NODE = {"CPU": 2.0, "memory": 8 * 2**30, "node:10.0.0.1": 1.0}
GPU_NODE = {"CPU": 8.0, "GPU": 1.0, "memory": 64 * 2**30}


def test_with_the_device_on_auto_a_cluster_without_gpus_gets_no_gpu_request() -> None:
    request = {"CPU": 1.0, "GPU": 1.0}
    assert placement.fit_to_nodes("image_embeddings", request, "auto", [NO_GPU_NODE]) == {
        "CPU": 1.0
    }
    assert placement.fit_to_nodes("image_embeddings", request, "auto", [NO_GPU_NODE, GPU_NODE]) == (
        request
    )


@pytest.mark.parametrize(
    ("request_", "device", "named"),
    [
        ({"CPU": 1.0, "GPU": 1.0}, "cuda", r"1 GPU \(FEATUREGEN_DEVICE=cuda\).*0 GPU"),
        ({"CPU": 4.0}, "auto", "4 CPU, and no node has that much .*: 2 CPU"),
        ({"CPU": 1.0, "memory": 16 * 2**30}, "cpu", "16.0 GiB memory"),
    ],
)
def test_a_step_no_node_can_serve_is_refused_naming_the_resource(
    request_: dict[str, float], device: str, named: str
) -> None:
    with pytest.raises(placement.Unplaceable, match=f"^image_embeddings asks .*{named}"):
        placement.fit_to_nodes("image_embeddings", request_, device, [NO_GPU_NODE])


def test_a_request_split_across_nodes_is_refused() -> None:
    """Ray places a job on one node: 1 GPU on one and 4 CPUs on another do not make one."""
    with pytest.raises(placement.Unplaceable, match="asks the Ray cluster for 4 CPU, 1 GPU"):
        placement.fit_to_nodes(
            "image_embeddings",
            {"CPU": 4.0, "GPU": 1.0},
            "cuda",
            [{"CPU": 1.0, "GPU": 1.0}, {"CPU": 4.0}],
        )


def test_a_kept_ray_head_that_is_gone_is_dropped_with_the_reason(tmp_path: Path) -> None:
    from featuregen_assets.core.runtime import ray_head

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record, directory = tmp_path / "ray-head.json", tmp_path / "featuregen-ray-x"
    directory.mkdir()
    ray_head.LocalRayHead("http://127.0.0.1:9", "127.0.0.1:9", gone.pid, str(directory)).save(
        record
    )
    assert ray_head.find_kept_head(record) == (
        None,
        f"the kept Ray head at http://127.0.0.1:9 (pid {gone.pid}) is gone",
    )
    assert not record.exists() and not directory.exists()
    assert ray_head.find_kept_head(record) == (None, None)
