"""The CLI's run launching: the GPU pool it may have to wait for."""

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from featuregen_assets.runs import (
    EARLIER_INSTANCE_CONFIGS,
    INSTANCE_CONFIG,
    SETUP_LOCK,
    dagster_instance,
    gpu_pool_holders,
    prepare_dagster_home,
)


def test_a_full_gpu_pool_names_the_steps_holding_it(fg_env: Path) -> None:
    with dagster_instance(fg_env) as instance:
        storage = instance.event_log_storage
        assert gpu_pool_holders(instance) == []
        storage.initialize_concurrency_limit_to_default("gpu")  # as a run's first GPU step does
        storage.claim_concurrency_slot("gpu", "run-a", "image_prompts")
        assert gpu_pool_holders(instance) == [("run-a", "image_prompts")]
        storage.free_concurrency_slots_for_run("run-a")
        assert gpu_pool_holders(instance) == []


def test_the_written_instance_config_limits_pools_and_frees_slots_of_ended_runs(
    fg_env: Path,
) -> None:
    with dagster_instance(fg_env) as instance:
        assert isinstance(instance, dg.DagsterInstance)
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 30


def test_an_earlier_featuregen_dagster_yaml_is_upgraded_and_ones_own_left_alone(
    fg_env: Path,
) -> None:
    config = fg_env / "dagster" / "dagster.yaml"
    for earlier in EARLIER_INSTANCE_CONFIGS:
        config.write_text(earlier)
        prepare_dagster_home(fg_env)
        assert config.read_text() == INSTANCE_CONFIG
    own = EARLIER_INSTANCE_CONFIGS[-1] + "run_queue:\n  max_concurrent_runs: 4\n"
    config.write_text(own)
    prepare_dagster_home(fg_env)
    assert config.read_text() == own


def test_first_runs_on_a_new_home_set_the_instance_up_one_at_a_time(tmp_path: Path) -> None:
    home = tmp_path / "dagster"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "FEATUREGEN_HOME": str(tmp_path)}
    code = (
        "from pathlib import Path; from featuregen_assets.runs import dagster_instance;"
        f" dagster_instance(Path({str(tmp_path)!r})); print('set up')"
    )
    with (home / SETUP_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another first run setting the instance up
        child = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
        )
        time.sleep(8)  # ample for the child to import and reach the setup
        assert child.poll() is None and not (home / "dagster.yaml").exists()
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0 and out.strip() == "set up"
    assert (home / "dagster.yaml").read_text() == INSTANCE_CONFIG
