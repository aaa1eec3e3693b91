"""What every request passes before the application sees it: the Host check, the bearer token,
a declared body size, and the security headers on every answer (one pure ASGI middleware:
Starlette's `BaseHTTPMiddleware` costs every response a stream hand-off).

- Host: an IP address, `localhost`, the host the service is bound to, or a name in the allow
  list (`*` admits any; `*.example.org` a domain's names). A DNS-rebinding page reaches the
  service under its own domain name, which is none of these, and gets 400.
- Token: when one is set, every request needs `Authorization: Bearer <token>` or the cookie
  that opening `/?token=<token>` once sets (HttpOnly, SameSite=Strict), else 401.
- Headers: `nosniff`, no framing, no referrer, and a Content-Security-Policy that allows
  only this origin's scripts, styles and images (neither the page nor /docs, Swagger UI served
  from the app, has an inline script or style).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "featuregen_token"
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


@dataclass(frozen=True)
class GuardSettings:
    """The host the service is bound to, further host names it answers to, its token, and
    the largest body a request may declare (413 with ``too_large`` before it is read)."""

    bound_host: str = "127.0.0.1"
    allowed_hosts: Sequence[str] = ()
    token: str | None = None
    max_body_bytes: int | None = None
    too_large: str = "the request body is over the limit"

    def host_allowed(self, host: str) -> bool:
        """Whether a request's Host header (port included or not) is one this service answers."""
        name = _strip_port(host).lower()
        if not name:
            return False
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            pass
        names = {"localhost", self.bound_host.lower(), *(h.lower() for h in self.allowed_hosts)}
        return (
            name in names
            or "*" in names
            or any(n.startswith("*.") and name.endswith(n[1:]) for n in names)
        )


class Guard:
    """The middleware: Host check, token check, security headers (see the module)."""

    def __init__(self, app: ASGIApp, settings: GuardSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [*HEADERS, (b"content-security-policy", CSP.encode())]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if not self.settings.host_allowed(headers.get("host", "")):
            await _refuse(send_with_headers, 400, "the Host header names no host this serves")
            return
        length, limit = headers.get("content-length", ""), self.settings.max_body_bytes
        if limit is not None and length.isdigit() and int(length) > limit:
            await _refuse(send_with_headers, 413, self.settings.too_large)
            return
        token = self.settings.token
        if token is not None:
            given = _presented_token(headers, scope)
            if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                await _refuse(
                    send_with_headers,
                    401,
                    "this service needs its token: Authorization: Bearer <token>, or open"
                    " /?token=<token> once in a browser",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
            if _token_in_query(scope):
                await _set_cookie_and_reload(send_with_headers, token)
                return
        await self.app(scope, receive, send_with_headers)


def _strip_port(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _presented_token(headers: dict[str, str], scope: Scope) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header presents no token
        return None
    if COOKIE in cookie:
        return cookie[COOKIE].value
    return _token_in_query(scope)


def _token_in_query(scope: Scope) -> str | None:
    """The page's `?token=`, which only `/` takes (it is then kept in a cookie)."""
    if scope["path"] != "/":
        return None
    return (parse_qs(scope.get("query_string", b"").decode()).get("token") or [None])[0]


async def _refuse(send: Send, status: int, detail: str, headers=()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _set_cookie_and_reload(send: Send, token: str) -> None:
    """Keep the token in a cookie and reload the page without it in the address."""
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", b"/"),
                (b"set-cookie", cookie.encode()),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})
