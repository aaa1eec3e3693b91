"""`featuregen search` (here, or through a running server) and `featuregen serve`."""

import argparse
import sys
from typing import TYPE_CHECKING

from featuregen_assets.cli.common import (
    CommandError,
    add_command,
    cli_settings,
    database_url,
    errors_as_lines,
    require_known_category,
    whole_number,
)
from featuregen_assets.core.search.modes import mode_names
from featuregen_assets.serve.main import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from featuregen_assets.settings import Settings


def _result_count(text: str) -> int:
    """-k: a whole number of results, 1 to MAX_K."""
    from featuregen_assets.core.search.engine import MAX_K

    return whole_number(text, 1, MAX_K)


def _port(text: str) -> int:
    """--port: a TCP port, 1 to 65535."""
    return whole_number(text, 1, 65535)


def _cmd_search(args: argparse.Namespace) -> int:
    from pathlib import Path

    from featuregen_assets.core.search.engine import SearchQuery
    from featuregen_assets.core.search.hits import any_image_stored
    from featuregen_assets.core.store import db
    from featuregen_assets.core.vision.hub import ModelUnavailable
    from featuregen_assets.core.vision.model_profiles import TinyModelMissing
    from featuregen_assets.serve.discovery import ServerRefused
    from featuregen_assets.serve.main import build_searcher

    if (args.query is None) == (args.image is None):
        args.usage("give a text query or --image PATH (one of them)")
    if args.query is not None:
        try:
            args.query.encode("utf-8")
        except UnicodeEncodeError:
            args.usage("the query is not valid text (its bytes do not decode as UTF-8)")
        if not args.query.strip():
            args.usage("the query is empty: give some words")
    settings = cli_settings()
    with errors_as_lines(ServerRefused):
        served = _served_answer(args, settings)
    if served is not None and served["total"]:
        return _print_answer(served, args.json, settings)
    with db.connection(database_url(settings)) as conn:
        if not any_image_stored(conn):
            raise CommandError(NOTHING_STORED)  # an empty answer would not say why
        if served is not None:
            return _print_answer(served, args.json, settings)
        if args.category is not None:
            require_known_category(conn, args.category)
        try:
            image = Path(args.image).read_bytes() if args.image else None
        except OSError as error:
            args.usage(f"cannot read --image: {error}")
        query = SearchQuery(
            text=args.query,
            mode=args.mode,
            image=image,
            category=args.category,
            k=args.k,
            version=args.version,
        )
        with errors_as_lines(LookupError, ValueError, ModelUnavailable, TinyModelMissing):
            searcher = build_searcher(settings)
            if args.query is not None and (args.mode or searcher.default_mode()) != "keyword":
                print(LOADING_HERE, file=sys.stderr)
            answer = searcher.search(conn, query)
    return _print_answer(answer.as_dict(), args.json, settings)


NOTHING_STORED = (
    "nothing is stored yet: `featuregen demo` stores the offline demo's images,"
    " `featuregen run --category C` downloads your own links (FEATUREGEN_LINKS_DIR/C.txt)"
)
LOADING_HERE = (
    "(no featuregen serve runs on this home: the query encoders load here, about a second"
    " (the first time, their export to ONNX takes several); a running `featuregen serve`"
    " answers at once)"
)


def _served_answer(args: argparse.Namespace, settings: "Settings") -> dict | None:
    """A text query's answer from the `featuregen serve` running on this home (which holds
    the encoder loaded), or None: no server, no answer, or no hit in a category it names."""
    from featuregen_assets.serve.discovery import running_server, search_through

    if args.query is None or (url := running_server(settings.home)) is None:
        return None
    params = {"q": args.query, "k": args.k}
    for name in ("mode", "category", "version"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    answer = search_through(url, params, settings.serve_token)
    if answer is None or (args.category and not answer["hits"]):  # unknown category? ask here
        return None
    print(f"(answered by featuregen serve at {url})", file=sys.stderr)
    return answer


def _print_answer(answer: dict, as_json: bool, settings: "Settings") -> int:
    """An answer's hits (`SearchAnswer.as_dict`), as JSON or one block a hit."""
    import json

    if as_json:
        print(json.dumps(answer["hits"], indent=2))
        return 0
    score = {"cosine": "cosine similarity (-1…1)", "keyword": "keyword rank (0…1)"}
    used = ", ".join(f"{k} {v}" for k, v in answer["model"].items() if v)
    print(f"{answer['mode']} search, {answer['total']} images ranked; models: {used or 'none'}")
    print(f"rank  score: {score.get(answer['score_kind'], 'reciprocal-rank fusion')}")
    for hit in answer["hits"]:
        print(
            f"{hit['rank']:>4}  {hit['score']:.3f}  {hit['category']:<14}"
            f" {hit['image_id'][:16]}  {hit['url']}"
        )
        # The tiny captioner has random weights: its prompts are noise, and say so.
        prompt = "prompt (random-weight captioner)" if hit["prompt_random"] else "prompt"
        generated = hit["prompt"] if hit["prompt_source"] == "generated" else None
        for label, text in ((prompt, generated), ("caption", hit["caption"])):
            if text:
                print(f"      {label}: {text}")
        if len(hit["why"]) > 1:
            why = "; ".join(f"{w['list']} #{w['rank']} ({w['score']:.3f})" for w in hit["why"])
            print(f"      why: {why}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from featuregen_assets.serve.main import ServeRefused, check_exposure, check_port, serve

    settings = cli_settings()
    with errors_as_lines(ServeRefused, status=2):
        warning = check_exposure(args.host, settings.serve_token, args.no_token)
    with errors_as_lines(ServeRefused):
        check_port(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr)
    url = database_url(settings)
    if settings.database_url is None:
        _say_if_page_cache_grows(url)
    serve(settings, url, args.host, args.port, not args.fp32)
    return 0


def _say_if_page_cache_grows(url: str) -> None:
    """A note when the embedded server, created before it was sized, takes its page cache
    (`db.size_shared_buffers`) only at its next start."""
    from featuregen_assets.core.store import db

    with db.connection(url) as conn:
        pending = db.pending_shared_buffers_mb(conn)
    if pending:
        print(
            f"note: the embedded PostgreSQL's page cache grows to {pending} MB at its next"
            " start, which speeds up search over a large store: stop this, `featuregen db"
            " stop`, then start this again",
            file=sys.stderr,
        )


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add `search`, `serve` to the `featuregen` commands."""
    search = add_command(
        commands,
        "search",
        _cmd_search,
        help="Search the images by words (or --image: more like this image).",
        description="A text query in one of the modes: caption (sentence vectors of the"
        " images' captions), image (the aligned text encoder over the DINOv2 vectors), keyword"
        " (PostgreSQL full text over captions and prompts) or hybrid (every available list,"
        " fused by reciprocal rank); with --image, the image's own DINOv2 vector. Scores:"
        " cosine similarity (-1…1) for caption and image, PostgreSQL's rank (0…1) for"
        " keyword, reciprocal-rank fusion for hybrid. Prints the mode, how many images it"
        " ranks and the model versions used.",
    )
    search.add_argument("query", nargs="?", help="What to look for, in words.")
    search.add_argument("--image", metavar="PATH", help="Find images like this image file.")
    search.add_argument(
        "--mode",
        choices=mode_names(),
        help="caption: the images' captions (semantic); image: the image vectors through the"
        " aligned text encoder (alias text); keyword: full text; hybrid: all fused. Default:"
        " FEATUREGEN_SEARCH_MODE, else the mode the research report measures best.",
    )
    search.add_argument(
        "--version", help="A registered text encoder version (default: the promoted one)."
    )
    search.add_argument("--category", help="Only images of this category.")
    search.add_argument(
        "-k", type=_result_count, default=10, help="How many results, 1 to 1,000 (default 10)."
    )
    search.add_argument("--json", action="store_true", help="Print the hits as JSON.")

    serve = add_command(
        commands,
        "serve",
        _cmd_serve,
        help="The search web page and JSON API (FastAPI on uvicorn).",
        description="Serve the search page at / and the API under /api/ (OpenAPI at /docs),"
        " with stored images and thumbnails by id. Binds loopback unless --host says otherwise.",
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"Default {DEFAULT_HOST}.")
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"Default {DEFAULT_PORT}.")
    serve.add_argument(
        "--fp32",
        action="store_true",
        help="Run the query encoders in float32 (default: int8 weights in their matrix"
        " products, 2-3x faster on a CPU; query vectors keep cosine >= 0.999 (text encoder)"
        " and >= 0.97 (sentence encoder) to float32's).",
    )
    serve.add_argument(
        "--no-token",
        action="store_true",
        help="Serve beyond loopback without FEATUREGEN_SERVE_TOKEN (refused otherwise): anyone"
        " who reaches the port can search and read every stored image.",
    )
