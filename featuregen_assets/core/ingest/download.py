"""Download image links into the `ImageStore`: bounded, lazy, in completion order.

`download_links` is a synchronous generator. Behind it one background thread runs an asyncio
loop; links are pulled from the iterable lazily, at most `concurrency` are in flight and at
most `2 * concurrency` results wait for the caller, so memory does not grow with the list (the
only per-link state kept is the set of URLs seen, for de-duplication). Each link is fetched by
`fetch.LinkFetcher` (retries, redirects, validation, store write), whose HTTP client
(`transport`) enforces the network policy of `netpolicy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from featuregen_assets.core.ingest.fetch import DownloadResult, DownloadSettings, LinkFetcher
from featuregen_assets.core.ingest.image_store import ImageStore, StoreWriteError
from featuregen_assets.core.ingest.links import Link
from featuregen_assets.core.ingest.netpolicy import BadURLError, normalize_url
from featuregen_assets.core.runtime.progress import Progress

__all__ = ["DownloadResult", "DownloadSettings", "download_links"]


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
        fetcher = LinkFetcher(self.store, s, executor)
        tasks: set[asyncio.Task] = set()

        async def one(url: str, target: str) -> None:
            try:
                result = await fetcher.fetch(url, target)
            except StoreWriteError as exc:  # our disk, not the link: the run stops
                self.results.put(_Crash(exc))
                self.main.cancel()
                return
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
                    refused = DownloadResult(url, exc.status, str(exc))
                key = target or url
                if key in seen:
                    continue
                seen.add(key)
                await self.waiting.acquire()
                if target is None:
                    self.results.put(refused)
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
            await fetcher.aclose()
            executor.shutdown(wait=True, cancel_futures=True)


def download_links(
    links: Iterable[Link],
    store: ImageStore,
    settings: DownloadSettings,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    progress_every_s: float = 5.0,
    total: int | None = None,
    on_idle: Callable[[], None] | None = None,
    idle_s: float = 1.0,
) -> Iterator[DownloadResult]:
    """Download `links` into `store`, yielding one result per distinct URL as each completes.

    Results come in completion order, not input order. Closing the generator early cancels
    the outstanding downloads (no partial file is left). A store write that fails (disk full)
    raises its `StoreWriteError` here after the results before it, and stops the run.
    `on_progress` is called from the caller's thread about every `progress_every_s` seconds
    and once at the end; `on_idle` whenever no result came for `idle_s` seconds (to commit
    what the caller holds).
    """
    run = _Run(links, store, settings)
    started = time.monotonic()
    last_report = started
    done = ok = 0

    def report() -> None:
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        on_progress(Progress(done, total, ok, done - ok, elapsed, rate))

    wait_s = min(progress_every_s, idle_s) if on_idle else progress_every_s
    run.start()
    try:
        while True:
            try:
                item = run.results.get(timeout=wait_s)
            except queue.Empty:
                item = None
                if on_idle:
                    on_idle()
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
