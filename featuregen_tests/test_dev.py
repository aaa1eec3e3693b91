"""`featuregen dev` and plain `dagster dev` (workspace.yaml) load the same code location."""

from pathlib import Path

import dagster as dg
from dagster._core.definitions.selector import InstigatorSelector
from dagster._core.remote_origin import RemoteInstigatorOrigin, RemoteRepositoryOrigin
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
)
from dagster._core.workspace.load_target import WorkspaceFileTarget

from featuregen_assets.launch.runs import (
    dagster_dev_command,
    dagster_instance,
    prepare_dagster_home,
)
from featuregen_assets.settings import Settings

REPOSITORY = Path(__file__).resolve().parents[1]
SENSOR = "link_file_sensor"


def _sensor_ids(workspace: Path) -> tuple[RemoteInstigatorOrigin, str]:
    """The origin and selector id dagster dev gives the sensor when it loads `workspace`."""
    [location] = WorkspaceFileTarget(paths=[str(workspace)]).create_origins()
    repository = RemoteRepositoryOrigin(
        code_location_origin=location, repository_name="__repository__"
    )
    origin = RemoteInstigatorOrigin(repository_origin=repository, instigator_name=SENSOR)
    selector = InstigatorSelector(
        location_name=location.location_name, repository_name="__repository__", name=SENSOR
    )
    return origin, selector.get_id()


def test_a_sensor_cursor_survives_switching_between_featuregen_dev_and_dagster_dev(
    fg_env: Path,
) -> None:
    command = dagster_dev_command(
        ["-h", "127.0.0.1", "-p", "3001"], prepare_dagster_home(Settings.from_env())
    )
    assert command[-4:] == ["-h", "127.0.0.1", "-p", "3001"]
    written = Path(command[command.index("-w") + 1])
    featuregen_dev, featuregen_selector = _sensor_ids(written)
    plain_dev, plain_selector = _sensor_ids(REPOSITORY / "workspace.yaml")
    assert featuregen_dev.get_id() == plain_dev.get_id()
    assert featuregen_selector == plain_selector
    with dagster_instance(Settings.from_env()) as instance:
        instance.add_instigator_state(
            InstigatorState(
                featuregen_dev,
                InstigatorType.SENSOR,
                InstigatorStatus.RUNNING,
                SensorInstigatorData(cursor='{"cafe.txt": {"sha": "ab"}}'),
            )
        )
        state = instance.get_instigator_state(plain_dev.get_id(), plain_selector)
        assert isinstance(instance, dg.DagsterInstance)
    assert state.instigator_data.cursor == '{"cafe.txt": {"sha": "ab"}}'


def test_dagster_dev_target_options_replace_featuregen_s_workspace(fg_env: Path) -> None:
    command = dagster_dev_command(
        ["-m", "my_defs", "--port=3001"], prepare_dagster_home(Settings.from_env())
    )
    assert "-w" not in command and command[-3:] == ["-m", "my_defs", "--port=3001"]
