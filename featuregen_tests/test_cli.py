import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from featuregen_assets.cli import build_parser, main

COMMANDS = ("run", "train", "demo", "models", "search", "summary", "dev", "db", "report", "import")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: featuregen {command}" in capsys.readouterr().out  # argparse's own help


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        ([], "error: the following arguments are required: command (see featuregen --help)"),
        (["bogus"], "error: argument command: invalid choice: 'bogus' (choose from "),
        (
            ["search", "x", "--bogus"],
            "error: unrecognized arguments: --bogus (see featuregen search",
        ),
        (["db", "url", "extra"], "error: unrecognized arguments: extra (see featuregen db --help)"),
        (["run"], "error: --category is required (but for the trained models) (see featuregen run"),
        (["export", "--format", "npy"], "error: one of the arguments --category --all is required"),
    ],
)
def test_usage_errors_are_one_line_like_every_command_error(argv, line, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    [said] = capsys.readouterr().err.splitlines()
    assert said.startswith(line) and said.endswith("--help)"), said


def test_top_level_help_lists_every_command() -> None:
    text = build_parser().format_help()
    assert all(command in text for command in COMMANDS)


def test_run_rejects_a_bad_category(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--category", "Bad Name"]) == 2
    assert "bad category" in capsys.readouterr().err


def test_run_refuses_a_category_without_a_link_file_before_adding_it(fg_env: Path, capsys) -> None:
    from featuregen_assets.launch.runs import dagster_instance
    from featuregen_assets.settings import Settings

    assert main(["run", "--category", "nolinks"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    links = fg_env.parent / "links"
    assert err == [
        "error: no link file for category 'nolinks': expected nolinks.txt"
        f" (or .csv, .tsv, .parquet, .jsonl) in {links}"
    ]
    with dagster_instance(Settings.from_env()) as instance:
        assert not instance.has_dynamic_partition("category", "nolinks")


def test_a_link_file_without_a_usable_line_is_a_warning(fg_env: Path, capsys) -> None:
    (fg_env.parent / "links" / "empty.txt").write_text("# nothing yet\n\n")
    assert main(["run", "--category", "empty", "--select", "raw_images"]) == 0
    assert "empty.txt has no usable line (0 bad): nothing to download" in capsys.readouterr().err


def test_summary_prints_what_the_tables_hold(fg_env: Path, database_url: str, capsys) -> None:
    from featuregen_assets.core.runtime.checkpoint import RowCheckpoint, step_directory
    from featuregen_assets.core.runtime.paths import checkpoints_dir
    from featuregen_assets.core.store import db

    with db.connection(database_url) as conn:
        conn.execute(
            "INSERT INTO raw_images (category, url, status, image_id) VALUES"
            " ('cafe', 'u1', 'ok', 'a'), ('cafe', 'u2', 'http_404', NULL)"
        )
    assert main(["summary"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["cafe", "2", "1", "1"]
    assert "http_404 1" in lines[1]
    assert not any("checkpoint" in line for line in lines)

    left = RowCheckpoint(
        step_directory(checkpoints_dir(fg_env), "image_prompts", "cafe", "org/m@12ab"), ["id"], "r"
    )
    left.add(("a",))
    left.flush()
    assert main(["summary"]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[-1]
        .startswith("  image_prompts cafe org/m@12ab: 1 chunks, ")
    )


def test_summary_counts_an_image_once_and_each_category_its_own_prompts(
    fg_env: Path, database_url: str, capsys
) -> None:
    from featuregen_assets.core.store import db

    with db.connection(database_url) as conn:  # image a in both categories, b in cafe only
        conn.execute(
            "INSERT INTO raw_images (category, url, status, image_id) VALUES"
            " ('cafe', 'u1', 'ok', 'a'), ('cafe', 'u2', 'ok', 'b'), ('bank', 'u1', 'ok', 'a')"
        )
        conn.execute(
            "INSERT INTO image_prompts (image_id, model, source, prompt) VALUES"
            " ('a', 'qwen', 'generated', 'x'), ('b', 'qwen', 'generated', 'y'),"
            " ('a', 'link-file:cafe', 'link_caption', 'c'),"
            " ('a', 'link-file:bank', 'link_caption', 'k')"
        )
    assert main(["summary"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    # category, links, downloaded, images, failed, prompts (own: generated + own caption)
    assert rows["bank"][:6] == ["bank", "1", "1", "1", "-", "2"]
    assert rows["cafe"][:6] == ["cafe", "2", "2", "2", "-", "3"]
    assert rows["total"][:6] == ["total", "3", "3", "2", "0", "4"]


@pytest.fixture
def embedded_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A new FEATUREGEN_HOME with no FEATUREGEN_DATABASE_URL: commands start its own embedded
    server, which is stopped afterwards, whatever failed."""
    from featuregen_assets.core.store import db

    home = tmp_path / "home"
    monkeypatch.setenv("FEATUREGEN_HOME", str(home))
    monkeypatch.delenv("FEATUREGEN_DATABASE_URL", raising=False)
    yield home
    db.stop_embedded_server(home)


def test_database_commands_migrate_a_fresh_home_first(
    embedded_home: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["summary"]) == 0  # UndefinedTable before: nothing had migrated the schema
    assert capsys.readouterr().out.splitlines()[-1].split()[:3] == ["total", "0", "0"]
    assert main(["db", "url"]) == 0
    assert capsys.readouterr().out.startswith("postgresql://")


def test_serve_says_when_the_embedded_server_takes_its_page_cache_at_its_next_start(
    embedded_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import psycopg

    from featuregen_assets.core.store import db
    from featuregen_assets.serve import main as serve_main

    monkeypatch.setattr(serve_main, "serve", lambda *args: None)
    assert main(["serve"]) == 0  # a new server: sized as it was made
    assert "page cache" not in capsys.readouterr().err
    admin = db.embedded_server_url(db.embedded_pgdata(embedded_home))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_buffers = '256MB'")
    assert main(["serve"]) == 0
    assert "page cache grows to 256 MB at its next start" in capsys.readouterr().err


def test_db_stop_refuses_while_serve_runs_on_the_home(
    embedded_home: Path, capsys: pytest.CaptureFixture
) -> None:
    from featuregen_assets.core.store import db
    from featuregen_assets.serve.discovery import announced

    assert main(["db", "url"]) == 0
    with announced(embedded_home, "http://127.0.0.1:8123"):  # as `featuregen serve` does
        assert main(["db", "stop"]) == 1
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("error: featuregen serve at http://127.0.0.1:8123 uses")
        assert db.embedded_server_running(embedded_home)
    assert main(["db", "stop"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "stopped"


def test_db_stop_refuses_while_other_connections_are_open_unless_forced(
    embedded_home: Path, capsys: pytest.CaptureFixture
) -> None:
    import psycopg

    from featuregen_assets.core.store import db

    assert main(["db", "url"]) == 0
    url = capsys.readouterr().out.strip()
    with psycopg.connect(url):  # as a psql session or `featuregen dev` holds one
        assert main(["db", "stop"]) == 1
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("error: the embedded PostgreSQL is in use: 1 other connection")
        assert db.embedded_server_running(embedded_home)
        assert main(["db", "stop", "--force"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "stopped"
    assert not db.embedded_server_running(embedded_home)


@pytest.mark.parametrize(("beat_s_ago", "refused"), [(5, True), (600, False)])
def test_db_stop_refuses_while_a_dagster_daemon_beats(
    embedded_home: Path, capsys: pytest.CaptureFixture, beat_s_ago, refused
) -> None:
    """`featuregen dev`'s daemon holds no connection between its beats (every 30 s): its
    heartbeat in the instance's table says it runs."""
    import psycopg

    from featuregen_assets.core.store import db

    assert main(["db", "url"]) == 0
    instance = db.ensure_database(capsys.readouterr().out.strip(), "featuregen_dagster")
    with psycopg.connect(instance) as conn:  # the table as Dagster's schema has it
        conn.execute("CREATE TABLE daemon_heartbeats (daemon_type text, timestamp timestamp)")
        conn.execute(
            "INSERT INTO daemon_heartbeats VALUES"
            " ('SENSOR', now() AT TIME ZONE 'UTC' - make_interval(secs => %s))",
            (beat_s_ago,),
        )
    assert main(["db", "stop"]) == (1 if refused else 0)
    assert ("a Dagster daemon (featuregen dev?) beat" in capsys.readouterr().err) is refused
    assert db.embedded_server_running(embedded_home) is refused


def test_db_stop_with_an_external_database_says_it_stops_nothing(fg_env: Path, capsys) -> None:
    assert main(["db", "stop"]) == 0
    assert capsys.readouterr().out.startswith("no embedded server runs; FEATUREGEN_DATABASE_URL's")


def test_serve_on_a_port_in_use_is_one_line_before_anything_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import socket

    from featuregen_assets.core.runtime import paths
    from featuregen_assets.serve import main as serve_main

    monkeypatch.setenv("FEATUREGEN_HOME", str(tmp_path))
    monkeypatch.setattr(serve_main, "serve", lambda *args: pytest.fail("serve started"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"error: cannot listen on 127.0.0.1:{port}: Address already in use" + (
        " (pick another with --port)"
    )
    assert not paths.serve_file(tmp_path).exists()


def test_a_second_serve_on_a_home_leaves_the_first_announced_as_it_stops(tmp_path: Path) -> None:
    from featuregen_assets.core.runtime import paths
    from featuregen_assets.serve.discovery import announced, running_server

    with announced(tmp_path, "http://127.0.0.1:8001"):
        with announced(tmp_path, "http://127.0.0.1:8002"):
            assert running_server(tmp_path) == "http://127.0.0.1:8002"
        assert running_server(tmp_path) == "http://127.0.0.1:8001"  # was removed before
    assert not paths.serve_file(tmp_path).exists()


def _one_stored_image(database_url: str) -> None:
    from featuregen_assets.core.store import db

    with db.connection(database_url) as conn:
        conn.execute(
            "INSERT INTO raw_images (category, url, status, image_id)"
            " VALUES ('cafe', 'u', 'ok', 'a')"
        )


def test_image_search_without_a_trained_encoder_is_a_clear_error(
    fg_env: Path, database_url: str, capsys
) -> None:
    _one_stored_image(database_url)
    assert main(["search", "--mode", "image", "a red circle"]) == 1
    assert "no aligned text encoder is registered" in capsys.readouterr().err


def test_search_by_image_without_its_model_is_one_line(
    fg_env: Path, database_url: str, monkeypatch, capsys
) -> None:
    _one_stored_image(database_url)
    monkeypatch.setenv("FEATUREGEN_MODELS", "real")
    monkeypatch.setenv("FEATUREGEN_IMAGE_EMBEDDER", "featuregen-tests/no-such-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    picture = fg_env / "picture.png"
    Image.new("RGB", (8, 8)).save(picture)  # an image: its header passes, then the model
    assert main(["search", "--image", str(picture)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: model 'featuregen-tests/no-such-model' is not in the Hugging")
    assert "point FEATUREGEN_IMAGE_EMBEDDER at a local copy" in line


def test_dev_starts_this_interpreters_dagster_without_it_on_path(
    tmp_path: Path, database_url: str
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FEATUREGEN_HOME": str(tmp_path),
        "FEATUREGEN_DATABASE_URL": database_url,  # no embedded server of its own left running
    }
    featuregen = Path(sys.executable).parent / "featuregen"
    # an invalid log level: dagster dev itself answers (a usage error) once it has started
    done = subprocess.run(
        [str(featuregen), "dev", "-h", "127.0.0.1", "--log-level", "not-a-level"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert "dagster dev" in done.stderr and "not-a-level" in done.stderr, done.stderr
    assert (tmp_path / "dagster" / "dagster.yaml").exists()
    assert "featuregen dev" not in done.stderr  # -h is dagster's host, not featuregen's help
    workspace = (tmp_path / "dagster" / "workspace.yaml").read_text()
    assert "location_name: featuregen\n" in workspace


def test_a_failed_run_ends_with_its_reason_and_where_the_log_is(
    fg_env: Path, monkeypatch, capsys
) -> None:
    (fg_env.parent / "links" / "cafe.txt").write_text("http://127.0.0.1:9/a.png\n")
    monkeypatch.setenv("FEATUREGEN_MODELS", "real")
    monkeypatch.setenv("FEATUREGEN_IMAGE_EMBEDDER", "featuregen-tests/no-such-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["run", "--category", "cafe", "--select", "image_embeddings"]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out
    *reasons, where = captured.err.strip().splitlines()
    assert reasons == [
        "resource setup failed: ModelUnavailable: model 'featuregen-tests/no-such-model' is not"
        " in the Hugging Face cache and HF_HUB_OFFLINE is set: download it once where the hub"
        " is reachable (`hf download featuregen-tests/no-such-model`), point"
        " FEATUREGEN_IMAGE_EMBEDDER at a local copy, or use FEATUREGEN_MODELS=tiny"
    ]
    log = Path(where.removeprefix("full log: ").removesuffix(" (--verbose prints it all)"))
    assert log.parent == fg_env / "logs" and "Stack Trace" in log.read_text()

    assert main(["run", "--category", "cafe", "--select", "image_embeddings", "--verbose"]) == 1
    assert "RESOURCE_INIT_FAILURE" in capsys.readouterr().err


def test_a_failed_report_ends_with_its_reason_and_where_the_log_is(fg_env: Path, capsys) -> None:
    assert main(["report"]) == 1  # nothing trained in this home
    *_, reason, where = capsys.readouterr().err.strip().splitlines()
    assert (
        reason == "research_report failed: no aligned_text_encoder registered:"
        " train it first (featuregen train text-encoder)"
    )
    assert where.startswith(f"full log: {fg_env / 'logs'}")


def test_a_run_from_the_command_line_shows_no_known_warnings(fg_env: Path) -> None:
    (fg_env.parent / "links" / "empty.txt").write_text("")
    featuregen = Path(sys.executable).parent / "featuregen"
    done = subprocess.run(
        [str(featuregen), "run", "--category", "empty", "--select", "raw_images"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "PYTHONWARNINGS")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "raw_images: empty: 0/0 links, 0 ok, 0 failed, 0.0 links/s",
        "raw_images: warning: empty.txt has no usable line (0 bad): nothing to download",
    ]


def test_unknown_demo_categories_are_one_line_listing_the_valid_ones(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--categories", "cafes"])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "unknown demo category 'cafes': choose from city_street, shop," in line


@pytest.mark.parametrize("count", ["0", "-5"])
def test_a_demo_of_no_images_is_a_usage_error_not_the_default(count: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--per-category", count])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: argument --per-category: must be above 0: {count}")


def test_a_category_with_link_files_in_two_formats_is_refused(fg_env: Path, capsys) -> None:
    (fg_env.parent / "links" / "cafe.txt").write_text("http://127.0.0.1/a.jpg\n")
    (fg_env.parent / "links" / "cafe.jsonl").write_text('{"url": "http://127.0.0.1/a.jpg"}\n')
    assert main(["run", "--category", "cafe"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: category 'cafe' has link files in 2 formats (cafe.jsonl, cafe.txt): keep one"
    ]
