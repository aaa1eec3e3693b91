"""Fetching one link: redirects checked hop by hop, retries with backoff, body limits,
validation and the store write.

`LinkFetcher.fetch` never raises for a bad link: every outcome is a `DownloadResult` whose
`status` is "ok" or a reason code. httpx's exceptions become reason codes in one place
(`_http_outcomes`), for the request and the body alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

import httpx

from featuregen_assets.core.ingest.image_store import ImageStore
from featuregen_assets.core.ingest.netpolicy import (
    AddressPolicy,
    BadURLError,
    BlockedAddressError,
    literal_refusal,
    normalize_url,
)
from featuregen_assets.core.ingest.transport import policy_client
from featuregen_assets.core.ingest.validate import SNIFF_BYTES, ImageRejected, inspect_image, sniff

DISALLOWED_ROBOTS_DIRECTIVES = frozenset({"noai", "noimageai"})
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_RETRYABLE_ERRORS = (
    httpx.ConnectError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class DownloadSettings:
    """How the downloader behaves (`Settings.download` fills it from `FEATUREGEN_*`)."""

    concurrency: int = 64
    per_host: int = 16
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float = 60.0
    max_bytes: int = 50 * 2**20
    max_pixels: int = 90_000_000
    retries: int = 3
    backoff: float = 0.5
    max_retry_after: float = 60.0
    max_redirects: int = 5
    user_agent: str = (
        "featuregen/0.1 (image feature store; +https://github.com/featuregen/featuregen)"
    )
    respect_robots: bool = True
    allowed_networks: tuple[str, ...] = ()
    full_decode: bool = False


@dataclass(frozen=True)
class DownloadResult:
    """The outcome of one link: `status` is "ok" or a reason code, `error` says more."""

    url: str
    status: str
    error: str | None = None
    image_id: str | None = None
    path: str | None = None
    width: int | None = None
    height: int | None = None
    mime: str | None = None
    bytes: int | None = None
    format: str | None = None


class _Failed(Exception):
    """A link's final outcome other than ok (raised inside an attempt)."""

    def __init__(self, status: str, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.retry_after = retry_after


class _Retryable(_Failed):
    """An outcome worth another attempt (connection error, 429, 5xx)."""


@contextlib.contextmanager
def _http_outcomes(during: str) -> Iterator[None]:
    """Turn httpx's (and the policy's) exceptions raised `during` a phase into outcomes."""
    try:
        yield
    except BlockedAddressError as exc:
        raise _Failed("blocked_address", str(exc)) from None
    except httpx.TimeoutException as exc:
        raise _Failed("timeout", f"{type(exc).__name__} {during}: {exc}") from None
    except _RETRYABLE_ERRORS as exc:
        raise _Retryable("connect_error", f"{type(exc).__name__} {during}: {exc}") from None
    except httpx.HTTPError as exc:
        raise _Failed("connect_error", f"{type(exc).__name__} {during}: {exc}") from None


def _retry_after(value: str | None, limit: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or HTTP date); None if absent."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), limit)


def _robots_denied(headers: httpx.Headers, agent_token: str) -> str | None:
    """The X-Robots-Tag directive that forbids our use, if any (as img2dataset reads it)."""
    for value in headers.get_list("x-robots-tag"):
        token, sep, rest = value.partition(":")
        scope, directives = (token.strip().lower(), rest) if sep else (None, value)
        if scope not in (None, agent_token):
            continue
        for directive in directives.split(","):
            if directive.strip().lower() in DISALLOWED_ROBOTS_DIRECTIVES:
                return value
    return None


def _status_failure(response: httpx.Response) -> _Failed:
    code = response.status_code
    detail = f"HTTP {code} {response.reason_phrase}".strip()
    if code == 429:
        return _Retryable("http_429", detail)
    if code >= 500:
        return _Retryable("http_5xx", detail)
    if code == 404:
        return _Failed("http_404", detail)
    if code >= 400:
        return _Failed("http_4xx", detail)
    return _Failed(f"http_{code // 100}xx", detail)


class LinkFetcher:
    """Fetches links with one client: per-host limits, retries, redirects, validation, store.

    Validation and the store write run in `executor` (Pillow, hashlib and file I/O release
    the GIL, so the event loop keeps serving sockets). Call `aclose` when done.
    """

    def __init__(self, store: ImageStore, settings: DownloadSettings, executor: Executor) -> None:
        self.store = store
        self.settings = settings
        self.executor = executor
        self.policy = AddressPolicy.from_specs(settings.allowed_networks)
        self.client = policy_client(
            self.policy,
            max_idle=settings.concurrency,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            user_agent=settings.user_agent,
        )
        self.agent_token = settings.user_agent.split("/", 1)[0].strip().lower()
        self.hosts: dict[str, tuple[asyncio.Semaphore, int]] = {}

    async def aclose(self) -> None:
        """Close the client and its connections."""
        await self.client.aclose()

    @contextlib.asynccontextmanager
    async def _host_slot(self, host: str):
        sem, users = self.hosts.get(host) or (asyncio.Semaphore(self.settings.per_host), 0)
        self.hosts[host] = (sem, users + 1)
        try:
            async with sem:
                yield
        finally:
            sem, users = self.hosts[host]
            if users == 1:
                del self.hosts[host]
            else:
                self.hosts[host] = (sem, users - 1)

    async def fetch(self, url: str, target: str) -> DownloadResult:
        """Download `target` (the normalised `url`) with retries; never raises for bad links."""
        s = self.settings
        attempt = 0
        async with self._host_slot(httpx.URL(target).host):
            while True:
                try:
                    async with asyncio.timeout(s.total_timeout):
                        return await self._attempt(url, target)
                except _Retryable as exc:
                    if attempt >= s.retries or (
                        exc.retry_after is not None and exc.retry_after >= s.max_retry_after
                    ):
                        return DownloadResult(url, exc.status, str(exc))
                    delay = s.backoff * 2**attempt * (0.5 + random.random())
                    await asyncio.sleep(max(delay, exc.retry_after or 0.0))
                    attempt += 1
                except _Failed as exc:
                    return DownloadResult(url, exc.status, str(exc))
                except TimeoutError:
                    return DownloadResult(
                        url, "timeout", f"no complete answer in {s.total_timeout}s"
                    )

    async def _attempt(self, url: str, target: str) -> DownloadResult:
        s = self.settings
        for _hop in range(s.max_redirects + 1):
            refusal = literal_refusal(target, self.policy)
            if refusal:
                raise _Failed("blocked_address", refusal)
            with _http_outcomes("on request"):
                request = self.client.build_request("GET", target)
                response = await self.client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECT_CODES and location:
                    try:
                        target = normalize_url(str(response.url.join(location)))
                    except (BadURLError, httpx.InvalidURL) as exc:
                        raise _Failed("bad_url", f"redirect to {location!r}: {exc}") from None
                    continue
                return await self._receive(url, response)
            finally:
                await response.aclose()
        raise _Failed("too_many_redirects", f"more than {s.max_redirects} redirects")

    async def _receive(self, url: str, response: httpx.Response) -> DownloadResult:
        s = self.settings
        if response.status_code != 200:
            failure = _status_failure(response)
            if failure.status == "http_429":
                failure.retry_after = _retry_after(
                    response.headers.get("retry-after"), s.max_retry_after
                )
            raise failure
        if s.respect_robots:
            directive = _robots_denied(response.headers, self.agent_token)
            if directive:
                raise _Failed("robots_denied", f"X-Robots-Tag: {directive}")
        length = response.headers.get("content-length")
        if length and length.isdigit() and int(length) > s.max_bytes:
            raise _Failed("too_large", f"Content-Length {length} > {s.max_bytes}")
        data = await self._body(response)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, self._keep, url, data
            )
        except ImageRejected as exc:
            raise _Failed(exc.status, str(exc)) from None

    async def _body(self, response: httpx.Response) -> bytes:
        s = self.settings
        chunks: list[bytes] = []
        size = 0
        sniffed = False
        with _http_outcomes("while reading the body"):
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > s.max_bytes:
                    raise _Failed("too_large", f"body exceeds {s.max_bytes} bytes")
                if not sniffed and size >= SNIFF_BYTES:
                    head = b"".join(chunks)[:SNIFF_BYTES]
                    if sniff(head) is None:
                        raise _Failed("not_image", f"unknown content starting {head[:8]!r}")
                    sniffed = True
        return b"".join(chunks)

    def _keep(self, url: str, data: bytes) -> DownloadResult:
        """Validate and store (runs in the thread pool)."""
        info = inspect_image(data, self.settings.max_pixels, full_decode=self.settings.full_decode)
        image_id, path = self.store.put(data, info.format)
        return DownloadResult(
            url=url,
            status="ok",
            image_id=image_id,
            path=str(path),
            width=info.width,
            height=info.height,
            mime=info.mime,
            bytes=len(data),
            format=info.format,
        )
