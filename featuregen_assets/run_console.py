"""What a run launched from the CLI shows on the terminal, and what it leaves when it fails.

By default the console shows only what the steps themselves log (progress, epochs, warnings),
one short line each, none of Dagster's own events; `verbose` gives Dagster's console log in
full. A failed run ends with one line per failed step (its reason) and the path of a file
holding the run's whole log.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import dagster as dg
from dagster._core.events import RunFailureReason

from featuregen_assets.core.runtime import paths

LOGGER = "featuregen_console"
RUN_EXCEPTION = RunFailureReason.RUN_EXCEPTION  # a run's own error, not a step's nor a kill


class _StepLines(logging.Handler):
    """Writes a step's own log records as `<step>: <message>`; drops Dagster's events and
    errors (the failure summary says what failed, the run's log file how). With `every_s`, a
    step's info lines come at most that often (warnings always)."""

    def __init__(self, every_s: float = 0.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._last_shown: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        if meta.get("dagster_event") is not None or record.levelno >= logging.ERROR:
            return
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        step = meta.get("step_key") or meta.get("resource_name") or "run"
        if not level and self.every_s:
            if record.created - self._last_shown.get(step, -self.every_s) < self.every_s:
                return
            self._last_shown[step] = record.created
        sys.stderr.write(f"{step}: {level}{meta.get('orig_message', record.getMessage())}\n")
        sys.stderr.flush()


@dg.logger(
    {
        "log_level": dg.Field(str, default_value="INFO"),
        "every_s": dg.Field(float, default_value=0.0),
    },
    description="The featuregen CLI's console: the steps' own lines, no Dagster events.",
)
def step_lines_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    """A logger writing what the steps log at `log_level` or above to stderr (a step's info
    lines at most every `every_s` seconds, when set)."""
    config = init_context.logger_config
    logger = logging.Logger(LOGGER, level=config["log_level"])
    logger.addHandler(_StepLines(config["every_s"]))
    return logger


def dagster_console(log_level: str, verbose: bool) -> dict:
    """Run config of Dagster's own console logger: at `log_level`, or debug when `verbose`."""
    return {"loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else log_level}}}}


def console(
    job: dg.JobDefinition, log_level: str, verbose: bool, every_s: float = 0.0
) -> tuple[dg.JobDefinition, dict]:
    """`job` and the run config of its console: the steps' lines at `log_level` (info lines
    at most every `every_s` seconds a step, when set), or with `verbose` Dagster's whole
    console log (debug level)."""
    if verbose:
        return job, dagster_console(log_level, verbose)
    logged = job.with_logger_defs({LOGGER: step_lines_logger})
    return logged, {"loggers": {LOGGER: {"config": {"log_level": log_level, "every_s": every_s}}}}


def one_line_reason(error) -> str:
    """What went wrong in one line, past Dagster's wrapping errors (a
    `SerializableErrorInfo`); a `dg.Failure`'s own description as it is."""
    while error.cause is not None and error.cls_name.startswith("Dagster"):
        error = error.cause
    first = " ".join(line.strip() for line in error.message.splitlines() if line.strip())
    qualified, sep, text = first.partition(": ")
    if sep and qualified.rsplit(".", 1)[-1] == error.cls_name:
        return text if error.cls_name == "Failure" else f"{error.cls_name}: {text}"
    return first


def failed_steps(result: dg.ExecuteInProcessResult) -> list[tuple[str, str]]:
    """`(step, one-line reason)` of each step that failed in the run; the run's resources
    (set up once for every step in process) count as a step of their own. With neither, the
    run's own error (its executor's, e.g. a step no Ray node can serve) as `run`'s."""
    failed, run_errors = [], []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if error is None:
            continue
        if event.is_step_failure:
            failed.append((event.step_key or "run", one_line_reason(error)))
        elif event.event_type == dg.DagsterEventType.RESOURCE_INIT_FAILURE:
            failed.append(("resource setup", one_line_reason(error)))
        elif getattr(event.event_specific_data, "failure_reason", None) == RUN_EXCEPTION:
            run_errors.append(("run", one_line_reason(error)))
    return failed or run_errors


def write_run_log(instance: dg.DagsterInstance, run_id: str, path: Path) -> Path:
    """Write the run's whole event log (errors with their stack traces) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for entry in instance.all_logs(run_id):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.timestamp))
            event = entry.dagster_event
            kind = f" {event.event_type_value}" if event else ""
            out.write(
                f"{when} {logging.getLevelName(entry.level)} {entry.step_key or '-'}{kind}"
                f" {entry.user_message}\n"
            )
            error = getattr(event.event_specific_data, "error", None) if event else None
            if error is not None:
                out.write(error.to_string() + "\n")
    return path


def failure_summary(
    result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance, home: Path
) -> list[str]:
    """The lines a failed run ends with: each failed step and its reason, where the log is
    (written under the featuregen `home`)."""
    log = write_run_log(instance, result.run_id, paths.logs_dir(home) / f"{result.run_id}.log")
    steps = failed_steps(result) or [("run", "failed before any step ran")]
    return [f"{step} failed: {reason}" for step, reason in steps] + [
        f"full log: {log} (--verbose prints it all)"
    ]
