"""Bounded work per request: a search thread pool with a queue limit, a deadline per request,
and a statement timeout on every connection a request takes.

- `SearchPool` runs the blocking part of a request (encoding, SQL) on its own threads, off
  the event loop; it admits at most `threads + queue` requests at once and answers the next
  503 with Retry-After at once rather than letting waits grow without bound.
- `Deadline`: each admitted request has `deadline_s` from admission; a connection is waited
  for only until then, and each statement runs under a PostgreSQL `statement_timeout` of the
  smaller of `statement_timeout_s` and what is left, so no query holds a connection longer.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

T = TypeVar("T")
RETRY_AFTER_S = 1
# The statement_timeout each pooled connection holds (set by `checkout`), in ms.
_timeout_ms: weakref.WeakKeyDictionary[psycopg.Connection, int] = weakref.WeakKeyDictionary()


class Overloaded(Exception):
    """More requests than the service admits at once (HTTP 503 with Retry-After)."""


class TooSlow(Exception):
    """A request that ran past its deadline or a statement past its timeout (HTTP 503)."""


@dataclass(frozen=True)
class Deadline:
    """When a request must be done (`time.monotonic()`), and the longest one statement runs."""

    at: float
    statement_timeout_s: float

    def left(self) -> float:
        """Seconds left; raises TooSlow when none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise TooSlow("the request ran past its deadline: try again, or a narrower query")
        return left

    def statement_ms(self) -> int:
        """The statement timeout for the next statement, in milliseconds (at least 1)."""
        return max(1, int(min(self.statement_timeout_s, self.left()) * 1000))


def checkout(
    pool: ConnectionPool, deadline: Deadline, wait_s: float | None = None
) -> psycopg.Connection:
    """A connection of ``pool`` waited for at most ``wait_s`` (default: until the deadline),
    its statements bounded by the deadline's timeout; PoolTimeout when none came in time.
    Give it back with ``pool.putconn``. The timeout is set only when it changes (a request
    with most of its time left finds the full one already set: no extra round trip)."""
    conn = pool.getconn(timeout=deadline.left() if wait_s is None else wait_s)
    try:
        timeout_ms = deadline.statement_ms()
        if _timeout_ms.get(conn) != timeout_ms:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(timeout_ms),))
            _timeout_ms[conn] = timeout_ms
    except BaseException:
        _timeout_ms.pop(conn, None)
        pool.putconn(conn)
        raise
    return conn


@contextmanager
def bounded_connection(pool: ConnectionPool, deadline: Deadline) -> Iterator[psycopg.Connection]:
    """`checkout` as a context."""
    conn = checkout(pool, deadline)
    try:
        yield conn
    finally:
        pool.putconn(conn)


class SearchPool:
    """Runs blocking request work on ``threads`` threads; at most ``threads + queue``
    requests admitted at once (see the module)."""

    def __init__(
        self, threads: int, queue: int, deadline_s: float, statement_timeout_s: float
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="search")
        self._limit = threads + queue
        self._admitted = 0  # read and written on the event loop's thread only
        self._deadline_s = deadline_s
        self._statement_timeout_s = statement_timeout_s

    async def run(self, work: Callable[[Deadline], T]) -> T:
        """``work(deadline)`` on a pool thread; raises Overloaded when the pool is full."""
        if self._admitted >= self._limit:
            raise Overloaded(
                f"the service is busy ({self._admitted} requests in hand): retry in"
                f" {RETRY_AFTER_S} s"
            )
        self._admitted += 1
        deadline = Deadline(time.monotonic() + self._deadline_s, self._statement_timeout_s)
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, _started, work, deadline)
        finally:
            self._admitted -= 1

    def shutdown(self) -> None:
        """Stop taking work; wait for what runs."""
        self._executor.shutdown(wait=True, cancel_futures=True)


def _started(work: Callable[[Deadline], T], deadline: Deadline) -> T:
    deadline.left()  # a request that waited in the queue past its deadline is not started
    try:
        return work(deadline)
    except PoolTimeout as error:
        raise TooSlow("no database connection came free before the deadline: retry") from error
