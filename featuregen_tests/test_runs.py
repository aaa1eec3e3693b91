"""The CLI's run launching: the GPU pool it may have to wait for."""

from pathlib import Path

import dagster as dg

from featuregen_assets.runs import dagster_instance, gpu_pool_holders


def test_a_full_gpu_pool_names_the_steps_holding_it(fg_env: Path) -> None:
    with dagster_instance() as instance:
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
    with dagster_instance() as instance:
        assert isinstance(instance, dg.DagsterInstance)
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 30
