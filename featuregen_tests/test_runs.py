"""The CLI's run launching: the instance in PostgreSQL, its dagster.yaml, the GPU pool."""

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from featuregen_assets.launch import instance_config
from featuregen_assets.launch.runs import (
    SETUP_LOCK,
    dagster_instance,
    gpu_pool_holders,
    prepare_dagster_home,
    run_category,
)
from featuregen_assets.settings import Settings


def test_a_full_gpu_pool_names_the_steps_holding_it(fg_env: Path) -> None:
    with dagster_instance(Settings.from_env()) as instance:
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
    with dagster_instance(Settings.from_env()) as instance:
        assert isinstance(instance, dg.DagsterInstance)
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 30
        assert not instance.telemetry_enabled


def test_the_instance_is_in_the_feature_servers_postgres_and_a_second_process_reads_its_runs(
    fg_env: Path, database_url: str
) -> None:
    (fg_env.parent / "links" / "quiet.txt").write_text("# no links yet\n")
    result = run_category("quiet", select=["raw_images"])
    config = yaml.safe_load((fg_env / "dagster" / "dagster.yaml").read_text())
    url = config["storage"]["postgres"]["postgres_url"]
    assert url.split("?")[0].endswith(f"/{conninfo_to_dict(database_url)['dbname']}_dagster")
    assert not (fg_env / "dagster" / "history").exists()  # no SQLite run storage
    reader = (
        "import dagster as dg, sys\n"
        "with dg.DagsterInstance.get() as instance:\n"
        "    run = instance.get_run_by_id(sys.argv[1])\n"
        "    storage = type(instance.run_storage).__name__\n"
        "    print(storage, run.status.value, run.tags['dagster/partition'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", reader, result.run_id],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        check=True,
    )
    status = "SUCCESS" if result.success else "FAILURE"
    assert done.stdout.split() == ["PostgresRunStorage", status, "quiet"]


@pytest.mark.parametrize("earlier", instance_config.UNMARKED_CONFIGS)
def test_an_earlier_featuregen_dagster_yaml_is_upgraded_with_a_notice_about_its_history(
    fg_env: Path, earlier: dict, caplog: pytest.LogCaptureFixture
) -> None:
    config = fg_env / "dagster" / "dagster.yaml"
    config.write_text(f"# Written by featuregen.\n{yaml.safe_dump(earlier)}")
    (fg_env / "dagster" / "history").mkdir()
    prepare_dagster_home(Settings.from_env())
    assert "storage" in yaml.safe_load(config.read_text())
    assert instance_config.written_by_featuregen(config.read_text())
    assert "no longer shown" in caplog.text


def test_ones_own_dagster_yaml_is_left_alone_also_an_edited_one_featuregen_wrote(
    fg_env: Path,
) -> None:
    config = fg_env / "dagster" / "dagster.yaml"
    own = yaml.safe_dump(instance_config.UNMARKED_CONFIGS[-1] | {"run_queue": {"x": 4}})
    config.write_text(own)
    prepare_dagster_home(Settings.from_env())
    assert config.read_text() == own
    config.unlink()
    prepare_dagster_home(Settings.from_env())
    edited = config.read_text().replace("default_limit: 1", "default_limit: 4")
    config.write_text(edited)
    prepare_dagster_home(Settings.from_env())
    assert config.read_text() == edited


def test_a_featuregen_dagster_yaml_follows_the_database_setting(
    fg_env: Path, pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = fg_env / "dagster" / "dagster.yaml"
    prepare_dagster_home(Settings.from_env())
    monkeypatch.setenv("FEATUREGEN_DATABASE_URL", pg_admin_url)  # the server's postgres database
    prepare_dagster_home(Settings.from_env())
    url = yaml.safe_load(config.read_text())["storage"]["postgres"]["postgres_url"]
    assert url.split("?")[0].endswith("/postgres_dagster")
    assert config.stat().st_mode & 0o077 == 0
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute('DROP DATABASE "postgres_dagster" WITH (FORCE)')


def test_first_runs_on_a_new_home_set_the_instance_up_one_at_a_time(
    tmp_path: Path, database_url: str
) -> None:
    home = tmp_path / "dagster"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FEATUREGEN_HOME": str(tmp_path),
        "FEATUREGEN_DATABASE_URL": database_url,
    }
    code = (
        "from featuregen_assets.launch.runs import dagster_instance;"
        " from featuregen_assets.settings import Settings;"
        " dagster_instance(Settings.from_env()); print('set up')"
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
    assert instance_config.written_by_featuregen((home / "dagster.yaml").read_text())
