"""What a CLI run's console shows: the steps' own lines, epoch lines thinned when asked."""

import logging
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.base import Executor

from featuregen_assets.launch.run_console import (
    INTERRUPTED,
    _StepLines,
    console,
    failed_steps,
    failure_summary,
    keep_stray_output,
    stray_output_to_log,
)


def _record(step: str, message: str, created: float, level: int = logging.INFO):
    record = logging.LogRecord("run", level, __file__, 1, message, None, None)
    record.created = created
    record.dagster_meta = {"step_key": step, "orig_message": message}
    return record


def test_epoch_lines_come_at_most_every_so_often_per_step_other_lines_always(capsys) -> None:
    handler = _StepLines(every_s=10)
    for record in (
        _record("decoder_model", "epoch 1/150", 100.0),
        _record("decoder_model", "epoch 2/150", 105.0),  # too soon after epoch 1
        _record("aligned_text_encoder", "epoch 1/100", 105.0),  # another step: its own pace
        _record("decoder_model", "a warning", 106.0, logging.WARNING),
        _record("decoder_model", "epoch 3/150", 110.0),
        _record("decoder_model", "epoch 4/150", 111.0),  # too soon
        _record("decoder_model", "stopping at epoch 4", 111.0),  # not an epoch line: shown
    ):
        handler.emit(record)
    assert capsys.readouterr().err.splitlines() == [
        "decoder_model: epoch 1/150",
        "aligned_text_encoder: epoch 1/100",
        "decoder_model: warning: a warning",
        "decoder_model: epoch 3/150",
        "decoder_model: stopping at epoch 4",
    ]


def test_without_a_pace_every_line_is_shown(capsys) -> None:
    handler = _StepLines()
    for epoch in (1, 2, 3):
        handler.emit(_record("decoder_model", f"epoch {epoch}/3", 100.0))
    assert len(capsys.readouterr().err.splitlines()) == 3


REFUSAL = "image_embeddings asks the Ray cluster for 1 GPU, and no node has that much"


class _RefusingExecutor(Executor):
    """An executor that refuses the run's plan, as the Ray executor refuses a step no node
    can serve."""

    @property
    def retries(self) -> RetryMode:
        return RetryMode.DISABLED

    def execute(self, plan_context, execution_plan):
        raise ValueError(REFUSAL)


@dg.executor(name="refusing")
def _refusing_executor(init_context: dg.InitExecutorContext) -> Executor:
    return _RefusingExecutor()


@dg.op
def _step() -> None:
    pass


@dg.job(executor_def=_refusing_executor)
def refused_job() -> None:
    _step()


def test_a_run_its_executor_fails_names_the_executors_reason(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.execute_job(dg.reconstructable(refused_job), instance)
        assert not result.success
        assert failed_steps(result) == [("run", f"ValueError: {REFUSAL}")]


@dg.op
def _noisy(context: dg.OpExecutionContext) -> None:
    context.log.info("a line of the step's own")
    subprocess.run(
        [sys.executable, "-c", "import sys; sys.stderr.write('a child process traceback\\n')"],
        check=True,
    )
    # what a library's retry warning or a thread's traceback writes (pytest's own hooks
    # would take those before they reach stderr)
    sys.stderr.write("Retrying failed database connection\n")
    raise KeyboardInterrupt  # as Ctrl-C reaches a step


def test_a_run_shows_its_lines_and_summary_and_logs_the_rest(tmp_path: Path, capfd) -> None:
    @dg.job
    def noisy() -> None:
        _noisy()

    job, config = console(noisy, "INFO", verbose=False)
    with dg.instance_for_test() as instance:
        with stray_output_to_log(tmp_path) as capture:
            result = job.execute_in_process(
                instance=instance, run_config=config, raise_on_error=False
            )
        keep_stray_output(capture, tmp_path, result.run_id)
        summary = failure_summary(result, instance, tmp_path)
    shown = capfd.readouterr().err
    assert shown.splitlines() == ["_noisy: a line of the step's own"]
    assert summary[0] == f"_noisy failed: {INTERRUPTED}"
    log = Path(summary[1].split()[2]).read_text()
    for stray in ("a child process traceback", "Retrying failed database"):
        assert stray in log
    print("after the run", file=sys.stderr)  # stderr is given back
    assert capfd.readouterr().err == "after the run\n"
