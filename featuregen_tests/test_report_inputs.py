"""The research report's inputs are explicit: the asset reads what its config names, and only
the demo and the CLI know where the demo's files are."""

import argparse

import dagster as dg
import pytest

from featuregen_assets.assets.models.research_report import ResearchReportConfig, _inputs
from featuregen_assets.cli.report_import import _report_budget, _report_inputs
from featuregen_assets.demo.report_budget import (
    DEMO_DECODER_EPOCHS,
    DEMO_REPORT_BUDGET,
    DEMO_VARIANT_EPOCHS,
)
from featuregen_assets.demo.run import demo_queries, demo_site, report_inputs


def _demo_files(home):
    demo_queries(home).parent.mkdir(parents=True)
    demo_queries(home).write_text("")
    (demo_site(home) / "masks").mkdir(parents=True)


def test_the_asset_reads_only_the_paths_its_config_names(tmp_path):
    _demo_files(tmp_path)
    assert _inputs(ResearchReportConfig()) == (None, None, None)
    named = ResearchReportConfig(
        query_file=str(demo_queries(tmp_path)), probe_masks=str(demo_site(tmp_path) / "masks")
    )
    assert _inputs(named) == (demo_queries(tmp_path), demo_site(tmp_path) / "masks", None)


@pytest.mark.parametrize(
    ("field", "message"),
    [("query_file", "no file"), ("probe_masks", "no folder"), ("probe_records", "no folder")],
)
def test_a_named_input_that_is_missing_fails_in_one_line(tmp_path, field, message):
    with pytest.raises(dg.Failure, match=f"config {field}: {message} .*nowhere"):
        _inputs(ResearchReportConfig(**{field: str(tmp_path / "nowhere")}))


def test_the_demo_names_its_own_files_that_exist(tmp_path):
    assert report_inputs(tmp_path) == {}
    _demo_files(tmp_path)
    assert report_inputs(tmp_path) == {
        "query_file": str(demo_queries(tmp_path)),
        "probe_masks": str(demo_site(tmp_path) / "masks"),
    }


def _args(queries=None, masks=None, truth=None, **budget):
    chosen = {"variants": None, "variant_epochs": None, "decoder_epochs": None, **budget}
    return argparse.Namespace(queries=queries, masks=masks, truth=truth, **chosen)


def test_the_cli_passes_the_demos_files_and_says_so(tmp_path, capsys):
    assert _report_inputs(_args(), tmp_path) == {}
    assert capsys.readouterr().out == ""
    _demo_files(tmp_path)
    assert _report_inputs(_args(), tmp_path) == report_inputs(tmp_path)
    [line] = capsys.readouterr().out.splitlines()
    said = f"inputs: the demo's under {tmp_path / 'demo'} (query_file, probe_masks);"
    assert line.startswith(said)


def test_the_cli_passes_only_what_it_is_given_when_given_any(tmp_path, capsys):
    _demo_files(tmp_path)
    truth = tmp_path / "truth"
    assert _report_inputs(_args(truth=str(truth)), tmp_path) == {"probe_records": str(truth)}
    assert capsys.readouterr().out == ""


def test_the_report_trains_as_the_demo_did_on_the_demos_inputs(tmp_path, capsys):
    assert _report_budget(_args(), tmp_path) == {}  # no demo here: the asset's defaults
    _demo_files(tmp_path)
    assert _report_budget(_args(), tmp_path) == DEMO_REPORT_BUDGET
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("budget: the demo's (variants lit,")
    assert f"{DEMO_VARIANT_EPOCHS} epochs each" in line
    mine = _report_budget(_args(variant_epochs=7, variants=()), tmp_path)
    assert mine == {"variants": (), "variant_epochs": 7, "decoder_epochs": DEMO_DECODER_EPOCHS}
    said = f"budget: the demo's (decoders {DEMO_DECODER_EPOCHS} epochs);"
    assert capsys.readouterr().out.startswith(said)
    given = _report_budget(_args(queries="q.jsonl", variant_epochs=7), tmp_path)
    assert given == {"variant_epochs": 7} and capsys.readouterr().out == ""
