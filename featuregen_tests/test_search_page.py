"""The search page in headless Chromium (Debian's `chromium`, driven by Playwright): typing a
query, thumbnails with scores, category chips, pasting an image, more like this, scrolling by
cursor, escaped text, error and no-result messages, broken thumbnails. Screenshots go to the
test's temporary directory."""

from __future__ import annotations

import base64
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from featuregen_assets.serve.app import create_app
from featuregen_tests.search_store import build_search_store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="no Chromium: install Debian's `chromium` (.ci/run does when it can)",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory, pg_admin_url: str, tiny_models_dir) -> Iterator[dict]:
    """The app over a demo-like store, served by uvicorn on a free loopback port."""
    from featuregen_assets.core.store import db, schema

    home = tmp_path_factory.mktemp("page-home")
    url = db.ensure_database(pg_admin_url, f"page_{uuid.uuid4().hex[:12]}")
    with db.connection(url) as conn:
        schema.migrate(conn)
    store = build_search_store(url, home, tiny_models_dir)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(store.config()), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield {"base": f"http://127.0.0.1:{port}", "store": store}
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(site) -> Iterator:
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site, tmp_path: Path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.shots = tmp_path  # where the test's screenshots go
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def _hits(page) -> list[str]:
    return page.eval_on_selector_all("li.hit:not([hidden])", "hits => hits.map(h => h.dataset.id)")


def _wait_for_thumbnails(page, at_least: int) -> None:
    page.wait_for_function(
        """n => {
            const images = [...document.querySelectorAll('li.hit:not([hidden]) img')];
            const loaded = i => i.complete && i.naturalWidth > 0;
            return images.length >= n && images.slice(0, n).every(loaded);
        }""",
        arg=at_least,
    )


def test_typing_a_query_shows_thumbnails_with_scores_and_chips_filter(page, site) -> None:
    store = site["store"]
    page.goto(site["base"] + "/")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("a red circle")
    page.keyboard.press("Enter")
    page.wait_for_selector("li.hit")
    _wait_for_thumbnails(page, 8)
    page.screenshot(path=page.shots / "text-query.png")
    scores = page.eval_on_selector_all("li.hit .score", "s => s.map(e => e.textContent)")
    assert len(scores) == len(store.ids) and all(re.fullmatch(r"-?\d\.\d{3}", s) for s in scores)
    assert "q=a+red+circle" in page.url and "mode=text" in page.url
    page.hover("li.hit >> nth=0")
    assert page.is_visible("li.hit >> nth=0 >> .prompt")

    counts = dict(
        page.eval_on_selector_all(
            "#facets .chip[data-category]:not([data-category=''])",
            "cs => cs.map(c => [c.dataset.category, +c.querySelector('.count').textContent])",
        )
    )
    assert counts == {c: 8 for c in ("cafe", "bank", "shop")}
    page.click("#facets .chip[data-category=bank]")
    page.wait_for_function("location.search.includes('category=bank')")
    page.wait_for_function(
        "[...document.querySelectorAll('li.hit .category')]"
        ".every(e => e.textContent.endsWith(' bank'))"
        " && document.querySelectorAll('li.hit').length === 8"
    )
    assert page.get_attribute("#facets .chip[data-category=bank]", "aria-pressed") == "true"
    assert {store.categories[i] for i in _hits(page)} == {"bank"}

    page.reload()  # the URL reproduces the page
    page.wait_for_selector("li.hit")
    assert page.input_value("#q") == "a red circle"
    assert {store.categories[i] for i in _hits(page)} == {"bank"}


def test_pasting_an_image_finds_it_first_and_more_like_this_follows_a_hit(page, site) -> None:
    store = site["store"]
    wanted = store.ids[13]
    page.goto(site["base"] + "/")
    page.evaluate(
        """b64 => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], 'pasted.png', {type: 'image/png'}));
            document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data}));
        }""",
        base64.b64encode(store.files[wanted]).decode(),
    )
    page.wait_for_selector("li.hit")
    _wait_for_thumbnails(page, 1)
    page.screenshot(path=page.shots / "pasted-image.png")
    assert _hits(page)[0] == wanted
    assert page.text_content("li.hit >> nth=0 >> .score") == "1.000"

    other = _hits(page)[4]
    page.click(f"li.hit[data-id='{other}'] .like")
    page.wait_for_function(f"location.search.includes('like={other}')")
    page.wait_for_function(f"document.querySelector('li.hit')?.dataset.id === '{other}'")
    assert len(_hits(page)) == len(store.ids)


def test_scrolling_loads_the_next_pages_each_hit_once(page, site) -> None:
    store = site["store"]
    page.goto(site["base"] + "/?q=circle&mode=hybrid&k=6")
    page.wait_for_selector("li.hit")
    for _ in range(10):
        if len(_hits(page)) == len(store.ids):
            break
        page.mouse.wheel(0, 5000)
        page.wait_for_timeout(300)
    hits = _hits(page)
    assert sorted(hits) == sorted(store.ids)  # all 24, each once, by pages of 6


def test_messages_escaping_and_broken_thumbnails(page, site) -> None:
    store = site["store"]
    page.goto(site["base"] + "/")
    hostile = '<img src=x onerror="window.injected=1">'
    page.check("input[name=mode][value=keyword]", force=True)
    page.fill("#q", hostile)
    page.press("#q", "Enter")
    page.wait_for_selector("#message:not([hidden])")
    assert hostile in page.text_content("#message")  # shown as text
    assert page.evaluate("window.injected") is None
    assert page.query_selector("#message img") is None

    broken = store.ids[2]
    page.route(f"**/thumbs/{broken}", lambda route: route.fulfill(status=404, body="gone"))
    page.fill("#q", "circle")
    page.check("input[name=mode][value=text]", force=True)
    page.press("#q", "Enter")
    # Choosing the mode and pressing Enter each start a search: wait for the last one's page.
    page.wait_for_function(
        """n => document.querySelectorAll('li.hit:not([hidden])').length === n
            && document.querySelector('#summary').textContent.includes('1 thumbnail')""",
        arg=len(store.ids) - 1,
    )
    assert broken not in _hits(page)

    page.route(
        "**/api/search?*",
        lambda route: route.fulfill(status=503, json={"detail": "no aligned text encoder"}),
    )
    page.fill("#q", "anything")
    page.press("#q", "Enter")
    page.wait_for_selector("#message.error:not([hidden])")
    assert "no aligned text encoder" in page.text_content("#message")
    page.screenshot(path=page.shots / "error.png")
