"""The CLI's run launching: the GPU pool it may have to wait for."""

from pathlib import Path

import dagster as dg

from featuregen_assets.runs import (
    EARLIER_INSTANCE_CONFIGS,
    INSTANCE_CONFIG,
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
