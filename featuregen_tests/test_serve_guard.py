"""The search service against careless and hostile requests: every bad parameter is 400 with
one line, cursors are signed, the Host header is checked, security headers are sent, and a
token, when set, guards every path."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from featuregen_assets.serve.app import create_app
from featuregen_assets.serve.cursors import cursor_key
from featuregen_tests.search_store import SearchStore, search_store_in_new_database

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def store(tmp_path_factory, pg_admin_url: str, tiny_models_dir) -> SearchStore:
    home = tmp_path_factory.mktemp("guard-home")
    return search_store_in_new_database(pg_admin_url, "guard", home, tiny_models_dir)


@pytest.fixture(scope="module")
def client(store: SearchStore) -> Iterator[TestClient]:
    with TestClient(create_app(store.config()), base_url="http://127.0.0.1:8000") as client:
        yield client


def _one_line_400(response, says: str) -> None:
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert says in detail and "\n" not in detail, detail


@pytest.mark.parametrize("field", ["q", "category", "like", "cursor"])
def test_a_nul_character_in_any_parameter_is_400(client, field) -> None:
    params = {**({} if field == "like" else {"q": "circle"}), field: "ab\x00cd"}
    response = client.get("/api/search", params=params)
    says = "not one this service made" if field == "cursor" else "NUL character"
    _one_line_400(response, says)


def test_a_nul_in_a_form_field_or_vector_category_is_400(client, store) -> None:
    upload = client.post(
        "/api/search/image",
        files={"file": ("a.jpg", store.files[store.ids[0]], "image/jpeg")},
        data={"category": "caf\x00e"},
    )
    _one_line_400(upload, "NUL character")
    vector = client.post(
        "/api/search/vector", json={"vector": [0.1] * store.dim, "category": "\x00"}
    )
    _one_line_400(vector, "NUL character")


def test_forged_malformed_and_overlong_cursors_are_400(client) -> None:
    first = client.get("/api/search", params={"q": "circle", "k": 2}).json()
    cursor = first["next_cursor"]
    engine_cursor, _, _ = cursor.rpartition(".")
    payload = json.loads(base64.urlsafe_b64decode(engine_cursor + "=" * 4))
    payload[0] = 1  # the position rewritten: a page 1 with wrong ranks, were it accepted
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    for bad in (forged, engine_cursor, f"{forged}.{cursor.rpartition('.')[2]}", "[" * 20_000):
        response = client.get("/api/search", params={"q": "circle", "k": 2, "cursor": bad})
        _one_line_400(response, "not one this service made")
    second = client.get("/api/search", params={"q": "circle", "k": 2, "cursor": cursor})
    assert second.status_code == 200 and second.json()["hits"][0]["rank"] == 3


@pytest.mark.parametrize("value", [1e200, -1e39, "NaN", "Infinity"])
def test_non_finite_or_overflowing_vectors_are_400(client, store, value) -> None:
    numbers = [0.5] * store.dim
    numbers[3] = value
    body = json.dumps({"vector": numbers}).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity")
    response = client.post(
        "/api/search/vector", content=body, headers={"content-type": "application/json"}
    )
    _one_line_400(response, "finite and within")


def test_an_upload_that_is_not_an_image_says_so_in_one_line(client) -> None:
    passwd = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n"
    response = client.post("/api/search/image", files={"file": ("passwd", passwd)})
    assert response.status_code == 415
    detail = response.json()["detail"]
    assert detail == "the file is not an image (JPEG, PNG, GIF, WebP, BMP or TIFF)"


def test_the_cursor_key_is_made_once_readable_by_its_owner_only(tmp_path) -> None:
    path = tmp_path / "home" / "serve-cursor-key"
    key = cursor_key(path)
    assert len(key) == 32 and cursor_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_cursors_from_before_a_restart_still_page_with_the_kept_key(store, tmp_path) -> None:
    key = cursor_key(tmp_path / "key")
    config = store.config(cursor_key=key)
    with TestClient(create_app(config), base_url="http://127.0.0.1") as first:
        cursor = first.get("/api/search", params={"q": "circle", "k": 2}).json()["next_cursor"]
    with TestClient(create_app(config), base_url="http://127.0.0.1") as second:
        page = second.get("/api/search", params={"q": "circle", "k": 2, "cursor": cursor})
    assert page.status_code == 200 and page.json()["hits"][0]["rank"] == 3


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8000", True),
        ("localhost:8000", True),
        ("[::1]:8000", True),
        ("10.1.2.3", True),
        ("search.example.org", True),
        ("evil.example.com:8000", False),
        ("rebind.attacker.test", False),
        ("", False),
    ],
)
def test_the_host_header_must_name_this_service(store, host, allowed) -> None:
    config = store.config(allowed_hosts=("search.example.org",))
    with TestClient(create_app(config)) as client:
        response = client.get("/api/search", params={"q": "circle"}, headers={"host": host})
    if allowed:
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert response.json()["detail"] == "the Host header names no host this serves"


def test_every_answer_carries_the_security_headers(client) -> None:
    for path in ("/", "/static/app.js", "/api/search?q=circle", "/images/nothing"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        policy = headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
    refused = client.get("/api/search", params={"q": "circle"}, headers={"host": "evil.test"})
    assert refused.headers["x-content-type-options"] == "nosniff"


def test_with_a_token_every_path_needs_it(store) -> None:
    config = store.config(token=TOKEN)
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        for path in ("/", "/static/app.js", "/api/search?q=circle", "/openapi.json"):
            refused = client.get(path)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            wrong = client.get(path, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
        bearer = {"authorization": f"Bearer {TOKEN}"}
        assert client.get("/api/search", params={"q": "circle"}, headers=bearer).status_code == 200
        assert client.get("/?token=nope", follow_redirects=False).status_code == 401
        opened = client.get(f"/?token={TOKEN}", follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/"
        assert "HttpOnly" in opened.headers["set-cookie"]
        assert "SameSite=Strict" in opened.headers["set-cookie"]
        # the client keeps the cookie, as a browser does: the page and its API calls work
        assert client.get("/").status_code == 200
        assert client.get("/api/search", params={"q": "circle"}).status_code == 200
