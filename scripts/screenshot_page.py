"""Take docs/search-page.png: `featuregen serve` over this installation's store (the demo's),
the search page in headless Chromium (Debian's `chromium`, driven by Playwright) with a query in
the page's default mode, refused unless every one of the first results' captions holds every
word of the query (so the picture shows a query whose results match it).

    python scripts/screenshot_page.py [--query "a red circle"] [--out docs/search-page.png]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

MATCHED = 5  # the first results whose captions must hold the query's words
STOP_WORDS = {"a", "an", "the", "of", "in", "at", "on"}


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(base: str, server: subprocess.Popen, limit_s: float = 300) -> None:
    """Wait for the page to answer (the server loads its models first)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"featuregen serve exited with {server.returncode}")
        try:
            if httpx.get(base + "/", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    sys.exit(f"featuregen serve did not answer within {limit_s:.0f} s")


def unmatched(captions: list[str], query: str) -> list[str]:
    """The captions that lack a word of the query (articles and prepositions aside)."""
    words = set(query.lower().split()) - STOP_WORDS
    return [c for c in captions if not words <= set(c.lower().replace(",", " ").split())]


def shoot(base: str, query: str, out: Path, chromium: str) -> None:
    """Search in the page, check its first results' captions, and save the screenshot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        page.goto(base + "/")
        page.wait_for_selector("input[name=mode]:checked", state="attached")
        page.fill("#q", query)
        page.press("#q", "Enter")
        page.wait_for_selector("li.hit")
        page.wait_for_function(
            """() => [...document.querySelectorAll('li.hit img')].slice(0, 10)
                .every(i => i.complete && i.naturalWidth > 0)"""
        )
        captions = page.eval_on_selector_all("li.hit .caption", "cs => cs.map(c => c.textContent)")[
            :MATCHED
        ]
        mode = page.eval_on_selector("input[name=mode]:checked", "r => r.value")
        summary = page.text_content("#summary")
        wrong = unmatched(captions, query)
        if len(captions) < MATCHED or wrong:
            sys.exit(f"{query!r} ({mode}): the first results do not match it: {wrong or captions}")
        page.mouse.move(0, 0)
        page.evaluate("document.activeElement.blur()")  # no focus ring in the picture
        page.screenshot(path=str(out))
        browser.close()
    print(f"{out}: {query!r} in mode {mode}: {summary}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--query", default="a red circle")
    parser.add_argument("--out", type=Path, default=Path("docs/search-page.png"))
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("no chromium: scripts/ensure-chromium.sh installs Debian's")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "featuregen_assets.cli", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until_serving(base, server)
        shoot(base, args.query, args.out, chromium)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
