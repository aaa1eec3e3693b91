"""What a CLI run's console shows: the steps' own lines, info lines thinned when asked."""

import logging

from featuregen_assets.run_console import _StepLines


def _record(step: str, message: str, created: float, level: int = logging.INFO):
    record = logging.LogRecord("run", level, __file__, 1, message, None, None)
    record.created = created
    record.dagster_meta = {"step_key": step, "orig_message": message}
    return record


def test_info_lines_come_at_most_every_so_often_per_step_and_warnings_always(capsys) -> None:
    handler = _StepLines(every_s=10)
    for record in (
        _record("decoder_model", "epoch 1/150", 100.0),
        _record("decoder_model", "epoch 2/150", 105.0),  # too soon after epoch 1
        _record("aligned_text_encoder", "epoch 1/100", 105.0),  # another step: its own pace
        _record("decoder_model", "a warning", 106.0, logging.WARNING),
        _record("decoder_model", "epoch 3/150", 110.0),
    ):
        handler.emit(record)
    assert capsys.readouterr().err.splitlines() == [
        "decoder_model: epoch 1/150",
        "aligned_text_encoder: epoch 1/100",
        "decoder_model: warning: a warning",
        "decoder_model: epoch 3/150",
    ]


def test_without_a_pace_every_line_is_shown(capsys) -> None:
    handler = _StepLines()
    for epoch in (1, 2, 3):
        handler.emit(_record("decoder_model", f"epoch {epoch}/3", 100.0))
    assert len(capsys.readouterr().err.splitlines()) == 3
