"""What a run launched from the CLI shows on the terminal, and what it leaves when it fails.

By default the console shows only what the steps themselves log (progress, epochs, warnings),
one short line each, none of Dagster's own events; `verbose` gives Dagster's console log in
full. Everything else written to stderr while the run goes on — tracebacks of threads and of
child processes (which inherit the descriptor), library warnings and retries — goes to a file
beside the run logs (`stray_output_to_log`), so an interrupted or failed run does not bury its
summary. A failed run ends with one line per failed step (its reason) and the path of a file
holding the run's whole log, that stray output included.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from dagster._core.events import RunFailureReason

from featuregen_assets.core.runtime import paths
from featuregen_assets.core.runtime.progress import set_terminal, terminal

LOGGER = "featuregen_console"
RUN_EXCEPTION = RunFailureReason.RUN_EXCEPTION  # a run's own error, not a step's nor a kill


class _StepLines(logging.Handler):
    """Writes a step's own log records as `<step>: <message>`; drops Dagster's events and
    errors (the failure summary says what failed, the run's log file how). With `every_s`, a
    step's epoch lines (`epoch N/M: ...`) come at most that often; its other lines always
    (e.g. where a training stopped and which epoch it kept)."""

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
        message = meta.get("orig_message", record.getMessage())
        if not level and self.every_s and message.startswith("epoch "):
            if record.created - self._last_shown.get(step, -self.every_s) < self.every_s:
                return
            self._last_shown[step] = record.created
        out = terminal()
        out.write(f"{step}: {level}{message}\n")
        out.flush()


@dg.logger(
    {
        "log_level": dg.Field(str, default_value="INFO"),
        "every_s": dg.Field(float, default_value=0.0),
    },
    description="The featuregen CLI's console: the steps' own lines, no Dagster events.",
)
def step_lines_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    """A logger writing what the steps log at `log_level` or above to stderr (a step's info
    epoch lines at most every `every_s` seconds, when set)."""
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
    """`job` and the run config of its console: the steps' lines at `log_level` (epoch lines
    at most every `every_s` seconds a step, when set), or with `verbose` Dagster's whole
    console log (debug level)."""
    if verbose:
        return job, dagster_console(log_level, verbose)
    logged = job.with_logger_defs({LOGGER: step_lines_logger})
    return logged, {"loggers": {LOGGER: {"config": {"log_level": log_level, "every_s": every_s}}}}


INTERRUPTED = "interrupted (Ctrl-C or SIGTERM); the next run resumes where it stopped"


def one_line_reason(error) -> str:
    """What went wrong in one line, past Dagster's wrapping errors (a
    `SerializableErrorInfo`); a `dg.Failure`'s own description as it is."""
    while error.cause is not None and error.cls_name.startswith("Dagster"):
        error = error.cause
    if error.cls_name in ("DagsterExecutionInterruptedError", "KeyboardInterrupt"):
        return INTERRUPTED
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


def stray_output_path(home: Path, run_id: str) -> Path:
    """Where `stray_output_to_log` leaves what a run wrote to stderr besides its lines."""
    return paths.logs_dir(home) / f"{run_id}.stderr"


@contextlib.contextmanager
def stray_output_to_log(home: Path) -> Iterator[Path]:
    """For the length of a run: `sys.stderr` and the stderr descriptor (so child processes'
    too) go to a file in the logs folder, whose path this yields; `progress.terminal()` (the
    steps' lines, the progress bar) stays on the terminal. Restored on the way out, also when
    interrupted."""
    capture = paths.logs_dir(home) / f"featuregen-{os.getpid()}-{time.time_ns()}.stderr"
    capture.parent.mkdir(parents=True, exist_ok=True)
    capture.touch()
    try:
        saved = os.dup(2)
    except OSError:  # started without a stderr: nothing to keep apart
        yield capture
        return
    console = sys.stderr
    console.flush()
    if _is_fd(console, 2):  # the real stderr: the terminal keeps a descriptor of its own
        console = os.fdopen(os.dup(saved), "w", buffering=1, errors="replace")
    with capture.open("a", buffering=1, errors="replace") as stray:
        os.dup2(stray.fileno(), 2)
        sys.stderr, previous = stray, sys.stderr
        set_terminal(console)
        try:
            yield capture
        finally:
            stray.flush()
            sys.stderr = previous
            os.dup2(saved, 2)
            os.close(saved)
            set_terminal(None)
            if console is not previous:
                console.close()


def _is_fd(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False


def keep_stray_output(capture: Path, home: Path, run_id: str) -> Path | None:
    """Name the captured output after its run (`stray_output_path`), or delete it when empty."""
    if capture.stat().st_size == 0:
        capture.unlink()
        return None
    return capture.replace(stray_output_path(home, run_id))


def write_run_log(
    instance: dg.DagsterInstance, run_id: str, path: Path, stray: Path | None = None
) -> Path:
    """Write the run's whole event log (errors with their stack traces) to `path`, then the
    file `stray` (what the process wrote to stderr meanwhile), if there is one."""
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
        if stray is not None and stray.is_file():
            out.write("\n--- written to stderr during the run (its threads and processes) ---\n")
            out.write(stray.read_text(errors="replace"))
    return path


def failure_summary(
    result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance, home: Path
) -> list[str]:
    """The lines a failed run ends with: each failed step and its reason, where the log is
    (written under the featuregen `home`)."""
    log = write_run_log(
        instance,
        result.run_id,
        paths.logs_dir(home) / f"{result.run_id}.log",
        stray_output_path(home, result.run_id),
    )
    steps = failed_steps(result) or [("run", "failed before any step ran")]
    return [f"{step} failed: {reason}" for step, reason in steps] + [
        f"full log: {log} (--verbose prints it all)"
    ]
