"""The search page in headless Chromium (Debian's `chromium`, driven by Playwright), under a
Content-Security-Policy without inline scripts or styles and with every request outside the app
recorded: captions and full category names under results, the total, the detail view and
keyboard navigation, the URL and history state (query image included), the start page from
/api/info (and without it), category chips, pasting an image, more like this, scrolling by
cursor, escaped text, messages, broken thumbnails (not counted once their list is replaced),
and /docs offline. Screenshots go to the test's temporary directory."""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from featuregen_assets.serve.app import create_app
from featuregen_tests.app_server import served
from featuregen_tests.search_store import search_store_in_new_database

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="no Chromium: install Debian's `chromium` (scripts/ensure-chromium.sh; .ci/run does)",
)
# Used where the app sends no policy of its own: no inline script or style, nothing from outside.
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'"
REPORT_VIOLATIONS = """document.addEventListener('securitypolicyviolation',
    e => window.reportViolation(`${e.violatedDirective} ${e.blockedURI}`))"""
STATIC_MODES = ["Captions", "Image vectors", "Keywords", "Hybrid"]  # app.js's FALLBACK_MODES


@pytest.fixture(scope="module")
def site(tmp_path_factory, pg_admin_url: str, tiny_models_dir) -> Iterator[dict]:
    """The app over a demo-like store, served by uvicorn on a free loopback port."""
    from featuregen_assets.core.store import db

    home = tmp_path_factory.mktemp("page-home")
    store = search_store_in_new_database(pg_admin_url, "page", home, tiny_models_dir)
    with db.connection(store.url) as conn:
        rows = conn.execute("SELECT image_id, caption, url FROM raw_images").fetchall()
    links = {image_id: (caption, link) for image_id, caption, link in rows}
    with served(create_app(store.config())) as base:
        yield {"base": base, "store": store, "links": links}


@pytest.fixture(scope="module")
def browser(site) -> Iterator:
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _with_policy(route) -> None:
    response = route.fetch()
    headers = {"content-security-policy": CSP, **response.headers}
    route.fulfill(response=response, headers=headers)


@pytest.fixture
def page(browser, site, tmp_path: Path):
    """A page whose script errors, policy violations and requests outside the app fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route(f"{site['base']}/**", _with_policy)
    errors: list[str] = []
    context.expose_function("reportViolation", lambda violation: errors.append(violation))
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "request",
        lambda r: r.url.startswith((site["base"], "data:")) or errors.append(f"outside: {r.url}"),
    )
    page.shots = tmp_path  # where the test's screenshots go
    yield page
    context.unroute_all(behavior="ignoreErrors")  # requests still in flight end with the context
    context.close()
    assert not errors, f"script errors, policy violations or outside requests: {errors}"


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("input[name=mode]:checked", state="attached")


def _until(page, expression: str) -> None:
    """Wait until a JS expression is true (as a function: the policy forbids eval)."""
    page.wait_for_function(f"() => {expression}")


def _hits(page) -> list[str]:
    return page.eval_on_selector_all("li.hit:not([hidden])", "hits => hits.map(h => h.dataset.id)")


def _focused_hit(page) -> str | None:
    return page.evaluate("document.activeElement.closest('li.hit')?.dataset.id ?? null")


def _wait_for_thumbnails(page, at_least: int) -> None:
    page.wait_for_function(
        """n => {
            const images = [...document.querySelectorAll('li.hit:not([hidden]) img')];
            const loaded = i => i.complete && i.naturalWidth > 0;
            return images.length >= n && images.slice(0, n).every(loaded);
        }""",
        arg=at_least,
    )


def _paste(page, data: bytes) -> None:
    page.evaluate(
        """b64 => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], 'pasted.png', {type: 'image/png'}));
            document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data}));
        }""",
        base64.b64encode(data).decode(),
    )


def test_results_show_captions_full_categories_the_total_and_chips_filter(page, site) -> None:
    store, links = site["store"], site["links"]
    _open(page, site["base"] + "/")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("a red circle")
    page.keyboard.press("Enter")
    page.wait_for_selector("li.hit")
    _wait_for_thumbnails(page, 8)
    page.screenshot(path=page.shots / "text-query.png")
    mode = page.eval_on_selector("input[name=mode]:checked", "r => r.value")
    assert "q=a+red+circle" in page.url and f"mode={mode}" in page.url
    shown = page.eval_on_selector_all(
        "li.hit",
        "hs => hs.map(h => [h.dataset.id, h.querySelector('.caption').textContent,"
        " h.querySelector('.category').textContent, h.querySelector('.score').textContent])",
    )
    assert len(shown) == len(store.ids)
    for image_id, caption, category, score in shown:
        assert caption == links[image_id][0] and category == store.categories[image_id]
        assert re.fullmatch(r"-?\d\.\d{3}", score)
    answer = page.request.get(f"{site['base']}/api/search?q=a+red+circle&mode={mode}").json()
    total = answer.get("total", len(store.ids))
    assert page.text_content("#summary").startswith(f"{total} results")

    counts = dict(
        page.eval_on_selector_all(
            "#facets .chip[data-category]:not([data-category=''])",
            "cs => cs.map(c => [c.dataset.category, +c.querySelector('.count').textContent])",
        )
    )
    assert counts == {c: 8 for c in ("cafe", "bank", "shop")}
    page.click("#facets .chip[data-category=bank]")
    _until(page, "location.search.includes('category=bank')")
    _until(
        page,
        "[...document.querySelectorAll('li.hit .category')].every(e => e.textContent === 'bank')"
        " && document.querySelectorAll('li.hit').length === 8",
    )
    assert page.get_attribute("#facets .chip[data-category=bank]", "aria-pressed") == "true"
    assert {store.categories[i] for i in _hits(page)} == {"bank"}
    assert page.text_content("#summary").startswith("8 results in bank")

    page.reload()  # the URL reproduces the page
    page.wait_for_selector("li.hit")
    assert page.input_value("#q") == "a red circle"
    assert {store.categories[i] for i in _hits(page)} == {"bank"}


def test_a_long_category_name_is_shown_whole_and_a_card_offers_more_like_this(page, site) -> None:
    name = "a restaurant with a very long category name that once ended in an ellipsis"

    def renamed(route) -> None:
        response = route.fetch()
        body = response.json()
        body["hits"][0]["category"] = name
        route.fulfill(response=response, json=body)

    page.route("**/api/search?*", renamed)
    _open(page, site["base"] + "/?q=circle&mode=keyword")
    page.wait_for_selector("li.hit")
    whole = page.eval_on_selector(
        "li.hit .category",
        """e => { const box = e.getBoundingClientRect();
                  const card = e.closest('li').getBoundingClientRect();
                  return [e.textContent, e.scrollWidth <= e.clientWidth && box.right <= card.right,
                          getComputedStyle(e).textOverflow]; }""",
    )
    assert whole == [name, True, "clip"]

    second = _hits(page)[1]
    page.click(f"li.hit[data-id='{second}'] .like")  # shown on hover
    _until(page, f"location.search === '?like={second}'")
    _until(page, f"document.querySelector('li.hit')?.dataset.id === '{second}'")


def test_keyboard_moves_between_results_and_opens_a_detail_view(page, site) -> None:
    store, links = site["store"], site["links"]
    _open(page, site["base"] + "/?q=a+red+circle")
    _wait_for_thumbnails(page, 8)
    ids = _hits(page)
    across = page.evaluate(
        "(() => { const hs = [...document.querySelectorAll('li.hit')];"
        " return hs.filter(h => h.offsetTop === hs[0].offsetTop).length; })()"
    )
    assert across > 1
    page.focus("#q")
    moves = [
        ("ArrowDown", ids[0]),
        ("ArrowRight", ids[1]),
        ("ArrowDown", ids[1 + across]),
        ("ArrowLeft", ids[across]),
        ("ArrowUp", ids[0]),
        ("ArrowUp", None),  # back to the search box
        ("ArrowDown", ids[0]),
        ("ArrowRight", ids[1]),
    ]
    for key, expected in moves:
        page.keyboard.press(key)
        assert _focused_hit(page) == expected, key
    assert page.evaluate("document.activeElement.id") != "q"

    page.keyboard.press("Enter")
    page.wait_for_selector("#detail[open]")
    _until(page, "document.querySelector('#detail .large img').naturalWidth > 0")
    page.screenshot(path=page.shots / "detail.png")
    caption, url = links[ids[1]]
    assert page.text_content("#detail .caption") == caption
    facts = dict(
        zip(
            page.eval_on_selector_all("#detail dt", "ds => ds.map(d => d.textContent)"),
            page.eval_on_selector_all("#detail dd", "ds => ds.map(d => d.textContent)"),
            strict=True,
        )
    )
    assert facts["Category"] == store.categories[ids[1]] and facts["URL"] == url
    assert facts["Image id"] == ids[1]
    assert page.get_attribute("#detail dd a", "href") == url
    assert page.get_attribute("#detail .original", "href") == f"/images/{ids[1]}"
    why = page.eval_on_selector_all(
        "#detail .why tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert why and all(rank.isdigit() or rank == "–" for _, rank, _ in why)

    page.keyboard.press("ArrowRight")  # the next result
    _until(page, f"document.querySelector('#detail .caption').textContent === {links[ids[2]][0]!r}")
    assert page.text_content("#detail-title").startswith("#3 ")
    page.keyboard.press("Escape")
    page.wait_for_selector("#detail", state="hidden")
    _until(page, f"document.activeElement.closest('li.hit')?.dataset.id === '{ids[2]}'")

    page.keyboard.press("Enter")
    page.click("#detail .like")  # more like this
    _until(page, f"location.search.includes('like={ids[2]}')")
    _until(page, f"document.querySelector('li.hit')?.dataset.id === '{ids[2]}'")
    assert not page.is_visible("#detail")
    assert page.get_attribute("#query-image img", "src") == f"/thumbs/{ids[2]}"
    assert len(_hits(page)) == len(store.ids)


def test_the_url_and_history_keep_the_search_and_the_query_image(page, site) -> None:
    store = site["store"]
    wanted = next(i for i in store.ids if store.categories[i] == "bank")
    _open(page, site["base"] + "/")
    page.check("input[name=mode][value=keyword]", force=True)
    page.fill("#q", "circle")
    page.press("#q", "Enter")
    _until(page, "location.search === '?q=circle&mode=keyword'")
    page.wait_for_selector("#facets .chip[data-category=bank]")
    page.click("#facets .chip[data-category=bank]")
    _until(page, "location.search.endsWith('&category=bank')")

    _paste(page, store.files[wanted])
    _until(page, "location.search === '?image=pasted.png&category=bank'")
    _until(page, f"document.querySelector('li.hit')?.dataset.id === '{wanted}'")
    _wait_for_thumbnails(page, 1)
    page.screenshot(path=page.shots / "pasted-image.png")
    preview = page.get_attribute("#query-image img", "src")
    assert preview.startswith("data:image/png;base64,") and page.is_visible("#query-image")
    assert page.text_content("li.hit >> nth=0 >> .score") == "1.000"

    page.reload()  # the history entry keeps the image
    _until(page, f"document.querySelector('li.hit')?.dataset.id === '{wanted}'")
    assert page.get_attribute("#query-image img", "src") == preview
    assert {store.categories[i] for i in _hits(page)} == {"bank"}

    page.go_back()
    _until(page, "location.search === '?q=circle&mode=keyword&category=bank'")
    _until(page, "document.querySelector('li.hit') !== null")
    assert page.input_value("#q") == "circle" and not page.is_visible("#query-image")
    assert page.is_checked("input[name=mode][value=keyword]")
    assert {store.categories[i] for i in _hits(page)} == {"bank"}
    page.go_back()
    _until(page, "location.search === '?q=circle&mode=keyword'")
    page.go_forward()
    page.go_forward()
    _until(page, f"document.querySelector('li.hit')?.dataset.id === '{wanted}'")
    assert page.get_attribute("#query-image img", "src") == preview

    page.click("#query-image .clear")  # back to the start page, keeping the category
    page.wait_for_selector("#start:not([hidden])")
    assert page.url.endswith("/?category=bank") and not _hits(page)


def test_the_start_page_and_the_modes_come_from_api_info(page, site) -> None:
    answer = page.request.get(site["base"] + "/api/info")
    info = answer.json() if answer.ok else None
    if info is None:  # a server without /api/info yet: the page shows what the contract gives
        info = {
            "modes": [
                {"name": "keyword", "label": "Keywords", "searches": "the captions' words"},
                {"name": "hybrid", "label": "Hybrid", "searches": "every list, fused"},
            ],
            "default_mode": "hybrid",
            "default_reason": "the report ranks it first",
            "examples": ["red circle", "a blue square"],
            "categories": {"bank": 8, "cafe": 8, "shop": 8},
            "total_images": 24,
        }
        page.route("**/api/info", lambda route: route.fulfill(json=info))
    _open(page, site["base"] + "/")
    page.wait_for_selector("#start:not([hidden]) #examples .example")
    page.screenshot(path=page.shots / "start.png")
    labels = page.eval_on_selector_all("#modes label", "ls => ls.map(l => l.textContent.trim())")
    assert labels == [m.get("label") or m["name"] for m in info["modes"]]
    assert page.eval_on_selector("input[name=mode]:checked", "r => r.value") == info["default_mode"]
    default = next(m for m in info["modes"] if m["name"] == info["default_mode"])
    assert default["searches"] in page.text_content("#mode-help")
    label = {m["name"]: m.get("label") or m["name"] for m in info["modes"]}
    weights = info.get("hybrid_weights", {"image": 0.25, "caption": 2.0, "keyword": 1.0})
    read = ", ".join(f"{label.get(n, n)} {w:g}" for n, w in weights.items() if w > 0)
    assert f"Weights: {read}" in page.text_content("#mode-help")  # what hybrid reads
    other = next(m for m in info["modes"] if m["name"] != info["default_mode"])
    page.check(f"input[name=mode][value={other['name']}]", force=True)
    assert other["searches"] in page.text_content("#mode-help")
    examples = page.eval_on_selector_all("#examples .example", "es => es.map(e => e.textContent)")
    assert examples == info["examples"]
    categories = page.eval_on_selector_all(
        "#categories .chip", "cs => cs.map(c => [c.dataset.category, c.textContent])"
    )
    assert categories == [[c, f"{c}{n:,}"] for c, n in info["categories"].items()]
    assert f"{info['total_images']:,} images" in page.text_content("#store-size")

    page.click("#categories .chip[data-category=cafe]")
    assert page.get_attribute("#categories .chip[data-category=cafe]", "aria-pressed") == "true"
    page.click("#examples .example >> nth=0")
    expected = f"?q={info['examples'][0]}&mode={other['name']}&category=cafe".replace(" ", "+")
    _until(page, f"location.search === {expected!r}")
    assert page.input_value("#q") == info["examples"][0] and not page.is_visible("#start")
    page.wait_for_selector("li.hit, #message:not([hidden])")
    assert {site["store"].categories[i] for i in _hits(page)} <= {"cafe"}


def test_hybrid_help_says_which_lists_its_weights_leave_out_and_why(page, site) -> None:
    info = page.request.get(site["base"] + "/api/info").json()
    chosen = {
        **info,
        "default_mode": "hybrid",
        "hybrid_weights": {"image": 0.0, "caption": 0.5, "keyword": 1.0},
        "hybrid_weights_reason": "chosen on the validation split",
    }
    page.route("**/api/info", lambda route: route.fulfill(json=chosen))
    _open(page, site["base"] + "/")
    page.wait_for_selector("#start:not([hidden])")
    label = {m["name"]: m.get("label") or m["name"] for m in info["modes"]}
    said = (
        f"Weights: {label['caption']} 0.5, {label['keyword']} 1 ({label['image']} not read),"
        " chosen on the validation split."
    )
    assert said in page.text_content("#mode-help")


def test_without_api_info_the_page_offers_its_static_modes(page, site) -> None:
    page.route("**/api/info", lambda route: route.fulfill(status=404, json={"detail": "Not Found"}))
    _open(page, site["base"] + "/")
    labels = page.eval_on_selector_all("#modes label", "ls => ls.map(l => l.textContent.trim())")
    assert labels == STATIC_MODES
    assert page.is_visible("#start") and not page.is_visible("#examples")
    assert "Type a description" in page.text_content("#store-size")


def test_an_empty_store_says_how_to_fill_it(page, site) -> None:
    empty = {**page.request.get(site["base"] + "/api/info").json()}
    empty.update(examples=[], categories={}, total_images=0)
    page.route("**/api/info", lambda route: route.fulfill(json=empty))
    _open(page, site["base"] + "/")
    said = page.text_content("#store-size")
    assert said.startswith("Nothing is stored yet") and "featuregen demo" in said
    assert "featuregen run" in said and not page.is_visible("#examples")


def test_scrolling_loads_the_next_pages_each_hit_once(page, site) -> None:
    store = site["store"]
    _open(page, site["base"] + "/?q=circle&mode=hybrid&k=6")
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
    _open(page, site["base"] + "/")
    hostile = '<img src=x onerror="window.injected=1">'
    page.check("input[name=mode][value=keyword]", force=True)
    page.fill("#q", hostile)
    page.press("#q", "Enter")
    page.wait_for_selector("#message:not([hidden])")
    assert hostile in page.text_content("#message")  # shown as text
    assert page.evaluate("window.injected") is None
    assert page.query_selector("#message img") is None

    answer = page.request.get(f"{site['base']}/api/search?q=circle&mode=hybrid").json()
    broken = answer["hits"][1]["image_id"]  # on screen, so its lazy thumbnail is requested
    page.route(f"**/thumbs/{broken}", lambda route: route.fulfill(status=404, body="gone"))
    page.fill("#q", "circle")
    page.check("input[name=mode][value=hybrid]", force=True)
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


def test_a_thumbnail_failing_after_its_list_was_replaced_is_not_counted(page, site) -> None:
    # Choosing a mode and pressing Enter start two searches: a thumbnail of the first list may
    # fail after the second list is shown. Its request is held here until then (the second
    # list's thumbnail of the same image waits on that request or reaches the route itself).
    answer = page.request.get(f"{site['base']}/api/search?q=circle&mode=keyword").json()
    broken = answer["hits"][1]["image_id"]  # on screen, so its lazy thumbnail is requested
    held: list = []
    released = False

    def hold(route) -> None:
        if released:
            route.fulfill(status=404)
        else:
            held.append(route)  # the handler may run only after the request event

    page.route(f"**/thumbs/{broken}", hold)
    with page.expect_request(f"**/thumbs/{broken}"):
        _open(page, site["base"] + "/?q=circle&mode=keyword")
    first = page.wait_for_selector(f"li.hit[data-id='{broken}']")
    page.press("#q", "Enter")  # the same search again: a second list replaces the first
    item = f"document.querySelector(\"li.hit[data-id='{broken}']\")"
    page.wait_for_function(f"old => {item} && {item} !== old", arg=first)
    released = True
    for route in held:
        route.fulfill(status=404)
    page.wait_for_function(f"old => old.hidden && {item}.hidden", arg=first)  # both failed
    assert page.text_content("#summary").endswith(" · 1 thumbnail could not be loaded (hidden)")
    assert len(_hits(page)) == len(answer["hits"]) - 1


def test_api_docs_render_offline(page, site) -> None:
    page.goto(site["base"] + "/docs")
    page.wait_for_selector(".opblock-summary-path")
    paths = page.eval_on_selector_all(".opblock-summary-path", "ps => ps.map(p => p.textContent)")
    assert "/api/search" in paths and "/api/search/image" in paths
    page.screenshot(path=page.shots / "docs.png")
