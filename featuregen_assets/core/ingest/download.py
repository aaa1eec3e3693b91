"""Download image links into the `ImageStore`: robust, bounded, policy-checked, fast.

`download_links` is a synchronous generator. Behind it one background thread runs an asyncio
loop with one `httpx.AsyncClient`; links are pulled from the iterable lazily, at most
`concurrency` are in flight and at most `2 * concurrency` results wait for the caller, so
memory does not grow with the list (the only per-link state kept is the set of URLs seen, for
de-duplication). Validation and the store write (sha256, fsync, rename) run in a small
thread pool: Pillow, hashlib and file I/O release the GIL, so the loop keeps serving sockets.

Network policy (see `netpolicy`): the connection pool's network backend resolves each host
itself, drops refused addresses and connects to an address it has just checked, so the
policy holds at every redirect hop and against DNS rebinding; environment proxies are
ignored (`trust_env=False`), since a proxy would connect on our behalf unchecked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import os
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpcore
import httpx

from featuregen_assets.core.ingest.image_store import ImageStore
from featuregen_assets.core.ingest.links import Link
from featuregen_assets.core.ingest.netpolicy import (
    AddressPolicy,
    BadURLError,
    BlockedAddressError,
    literal_refusal,
    normalize_url,
    resolve_permitted,
)
from featuregen_assets.core.ingest.validate import SNIFF_BYTES, ImageRejected, inspect_image, sniff

DISALLOWED_ROBOTS_DIRECTIVES = frozenset({"noai", "noimageai"})
KEEPALIVE_EXPIRY_S = 30.0
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_RETRYABLE_ERRORS = (
    httpx.ConnectError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class DownloadSettings:
    """How the downloader behaves; `from_env` reads `FEATUREGEN_*` overrides."""

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

    @classmethod
    def from_env(cls, **overrides: object) -> DownloadSettings:
        """Defaults, then environment, then `overrides`.

        `FEATUREGEN_ALLOWED_NETWORKS` (comma-separated addresses/CIDRs), `FEATUREGEN_USER_AGENT`,
        and `FEATUREGEN_DOWNLOAD_<FIELD>` for any other field (e.g. `..._CONCURRENCY=32`).
        """
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            name = {
                "allowed_networks": "FEATUREGEN_ALLOWED_NETWORKS",
                "user_agent": "FEATUREGEN_USER_AGENT",
            }.get(field.name, f"FEATUREGEN_DOWNLOAD_{field.name.upper()}")
            raw = os.environ.get(name)
            if raw is not None and raw.strip():
                values[field.name] = _parse_env(field.default, raw.strip())
        values.update(overrides)
        return cls(**values)


def _parse_env(default: object, raw: str) -> object:
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return type(default)(raw)


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


@dataclass(frozen=True)
class Progress:
    """Where a download run stands."""

    done: int
    total: int | None
    ok: int
    failed: int
    elapsed_s: float
    rate: float


class _Failed(Exception):
    """A link's final outcome other than ok (raised inside an attempt)."""

    def __init__(self, status: str, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.retry_after = retry_after


class _Retryable(_Failed):
    """An outcome worth another attempt (connection error, 429, 5xx)."""


class _PolicyBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy permits, the very addresses it checked."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host, port, timeout=None, local_address=None, socket_options=None
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve_permitted(host, port, self._policy)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"cannot connect to {host}")

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _LeanPool:
    """HTTP/1.1 keep-alive connections kept per origin, with O(1) check-out and return.

    httpcore's own pool rescans every connection (quadratically, with a poll() each) whenever
    a request starts or ends: at 64 connections that cost ~7 ms of CPU per image and capped
    throughput near 100 images/s. Concurrency is bounded by `download_links` itself, so this
    pool only recycles idle connections: at most `max_idle` in all, least recently used
    evicted first, each checked for expiry / server hang-up when taken.
    """

    def __init__(self, backend: httpcore.AsyncNetworkBackend, ssl_context, max_idle: int) -> None:
        self._backend = backend
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._idle: dict[tuple, list[httpcore.AsyncHTTPConnection]] = {}
        self._lru: OrderedDict[httpcore.AsyncHTTPConnection, tuple] = OrderedDict()
        self._open: set[httpcore.AsyncHTTPConnection] = set()

    async def __aenter__(self) -> _LeanPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        origin = request.url.origin
        key = (origin.scheme, origin.host, origin.port)
        connection = await self._checkout(origin, key)
        try:
            response = await connection.handle_async_request(request)
        except BaseException:
            await self._discard(connection)
            raise
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=_ReleasingStream(response.stream, lambda: self._release(connection, key)),
            extensions=response.extensions,
        )

    async def _checkout(self, origin: httpcore.Origin, key: tuple) -> httpcore.AsyncHTTPConnection:
        stack = self._idle.get(key)
        while stack:
            connection = stack.pop()
            del self._lru[connection]
            if not stack:
                del self._idle[key]
            if connection.is_available() and not connection.has_expired():
                return connection
            await self._discard(connection)
        connection = httpcore.AsyncHTTPConnection(
            origin=origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
            network_backend=self._backend,
        )
        self._open.add(connection)
        return connection

    async def _release(self, connection: httpcore.AsyncHTTPConnection, key: tuple) -> None:
        if not connection.is_available():
            await self._discard(connection)
            return
        if len(self._lru) >= self._max_idle:
            oldest, oldest_key = self._lru.popitem(last=False)
            self._idle[oldest_key].remove(oldest)
            if not self._idle[oldest_key]:
                del self._idle[oldest_key]
            await self._discard(oldest)
        self._idle.setdefault(key, []).append(connection)
        self._lru[connection] = key

    async def _discard(self, connection: httpcore.AsyncHTTPConnection) -> None:
        self._open.discard(connection)
        await connection.aclose()

    async def aclose(self) -> None:
        connections, self._open = list(self._open), set()
        self._idle.clear()
        self._lru.clear()
        for connection in connections:
            await connection.aclose()


class _ReleasingStream:
    """A response body that hands its connection back to the pool once closed."""

    def __init__(self, stream, release: Callable[[], Awaitable[None]]) -> None:
        self._stream = stream
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            await self._release()


def _client(settings: DownloadSettings) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx's transport maps requests, responses and exceptions; its pool is swapped for ours.
    transport._pool = _LeanPool(
        _PolicyBackend(AddressPolicy.from_specs(settings.allowed_networks)),
        transport._pool._ssl_context,
        max_idle=settings.concurrency,
    )
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.connect_timeout,
    )
    headers = {
        "User-Agent": settings.user_agent,
        "Accept": "image/*,*/*;q=0.5",
        "Accept-Encoding": "identity",
    }
    return httpx.AsyncClient(transport=transport, timeout=timeout, headers=headers, trust_env=False)


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


class _Downloader:
    """The async side: one client, concurrency limits, retries, redirects, validation."""

    def __init__(
        self, store: ImageStore, settings: DownloadSettings, executor: ThreadPoolExecutor
    ) -> None:
        self.store = store
        self.settings = settings
        self.executor = executor
        self.policy = AddressPolicy.from_specs(settings.allowed_networks)
        self.client = _client(settings)
        self.agent_token = settings.user_agent.split("/", 1)[0].strip().lower()
        self.hosts: dict[str, tuple[asyncio.Semaphore, int]] = {}

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
            try:
                request = self.client.build_request("GET", target)
                response = await self.client.send(request, stream=True)
            except BlockedAddressError as exc:
                raise _Failed("blocked_address", str(exc)) from None
            except httpx.TimeoutException as exc:
                raise _Failed("timeout", f"{type(exc).__name__}: {exc}") from None
            except _RETRYABLE_ERRORS as exc:
                raise _Retryable("connect_error", f"{type(exc).__name__}: {exc}") from None
            except httpx.HTTPError as exc:
                raise _Failed("connect_error", f"{type(exc).__name__}: {exc}") from None
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
        try:
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
        except httpx.TimeoutException as exc:
            raise _Failed("timeout", f"{type(exc).__name__} while reading the body") from None
        except _RETRYABLE_ERRORS as exc:
            raise _Retryable("connect_error", f"{type(exc).__name__}: {exc}") from None
        except httpx.HTTPError as exc:
            raise _Failed("connect_error", f"{type(exc).__name__}: {exc}") from None
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


_DONE = object()


class _Crash:
    """An exception from the background thread, to re-raise in the caller's."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


class _Run:
    """The background thread: pulls links, runs downloads, hands results to the caller."""

    def __init__(self, links: Iterable[Link], store: ImageStore, settings: DownloadSettings):
        self.links = links
        self.store = store
        self.settings = settings
        self.results: queue.Queue = queue.Queue()
        self.started = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main: asyncio.Task | None = None
        self.waiting: asyncio.Semaphore | None = None
        self.thread = threading.Thread(target=self._thread, name="featuregen-download", daemon=True)

    def start(self) -> None:
        self.thread.start()
        self.started.wait()

    def taken(self) -> None:
        """The caller took a result: one more may be queued."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.waiting.release)

    def stop(self) -> None:
        """Cancel outstanding work and wait for the thread (stores in progress complete)."""
        if self.thread.is_alive() and self.main is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.main.cancel)
        self.thread.join()

    def _thread(self) -> None:
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            self.results.put(_Crash(exc))
        finally:
            self.started.set()
            self.results.put(_DONE)

    async def _main(self) -> None:
        s = self.settings
        self.loop = asyncio.get_running_loop()
        self.main = asyncio.current_task()
        self.waiting = asyncio.Semaphore(2 * s.concurrency)
        in_flight = asyncio.Semaphore(s.concurrency)
        self.started.set()
        executor = ThreadPoolExecutor(max_workers=min(32, max(4, s.concurrency // 4)))
        downloader = _Downloader(self.store, s, executor)
        tasks: set[asyncio.Task] = set()

        async def one(url: str, target: str) -> None:
            try:
                result = await downloader.fetch(url, target)
            except Exception as exc:  # a bug must cost one link, not the run
                result = DownloadResult(url, "error", f"{type(exc).__name__}: {exc}")
            finally:
                in_flight.release()
            self.results.put(result)

        try:
            seen: set[str] = set()
            for link in self.links:
                url = link if isinstance(link, str) else link.url
                try:
                    target = normalize_url(url)
                except BadURLError as exc:
                    target = None
                    error = str(exc)
                key = target or url
                if key in seen:
                    continue
                seen.add(key)
                await self.waiting.acquire()
                if target is None:
                    self.results.put(DownloadResult(url, "bad_url", error))
                    continue
                await in_flight.acquire()
                task = asyncio.create_task(one(url, target))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await downloader.client.aclose()
            executor.shutdown(wait=True, cancel_futures=True)


def download_links(
    links: Iterable[Link],
    store: ImageStore,
    settings: DownloadSettings,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    progress_every_s: float = 5.0,
    total: int | None = None,
) -> Iterator[DownloadResult]:
    """Download `links` into `store`, yielding one result per distinct URL as each completes.

    Results come in completion order, not input order. Closing the generator early cancels
    the outstanding downloads (no partial file is left). `on_progress` is called from the
    caller's thread about every `progress_every_s` seconds and once at the end.
    """
    run = _Run(links, store, settings)
    started = time.monotonic()
    last_report = started
    done = ok = 0

    def report() -> None:
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        on_progress(Progress(done, total, ok, done - ok, elapsed, rate))

    run.start()
    try:
        while True:
            try:
                item = run.results.get(timeout=progress_every_s)
            except queue.Empty:
                item = None
            if item is _DONE:
                break
            if isinstance(item, _Crash):
                raise item.exc
            if item is not None:
                run.taken()
                done += 1
                ok += item.status == "ok"
                yield item
            if on_progress and time.monotonic() - last_report >= progress_every_s:
                last_report = time.monotonic()
                report()
        if on_progress:
            report()
    finally:
        run.stop()
