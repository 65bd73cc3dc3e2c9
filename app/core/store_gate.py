"""Isolation from a slow or hung store: every store call of a running service goes through a gate.

A Chroma server that stops answering (SIGSTOP, a stuck disk, a network partition) accepts
connections and never replies. Without a gate each request would hold a worker thread until its
HTTP timeout, and enough of them would take every thread of the service, ``/health`` included.

The gate is a bounded pool of ``store_max_concurrency`` threads that run store calls:
- each call waits at most ``store_timeout_s`` for its result, then fails with
  :class:`StoreUnavailable` (the thread goes on waiting for the store's own timeout, and keeps its
  slot until then, so stuck calls are counted);
- a call that finds every slot taken waits at most ``store_queue_wait_s`` for one (not at all
  while the last call timed out and none has succeeded since), then fails with :class:`Busy`
  (HTTP 503 with ``Retry-After``) instead of queueing past the timeout.

With a healthy store a call takes milliseconds, so slots turn over long before that wait ends.
``/health`` does not use the gate (it has its own short deadline, :mod:`app.http.routes.health`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from app.core.errors import Busy, StoreUnavailable
from app.core.settings import Settings
from app.core.store import where

T = TypeVar("T")

# The methods of a Chroma collection that talk to the store.
STORE_CALLS = frozenset({"add", "count", "delete", "get", "modify", "peek", "query", "update", "upsert"})


class StoreGate:
    """A bounded pool for store calls with a per-call deadline; see the module's docstring."""

    def __init__(self, settings: Settings) -> None:
        self.slots = settings.store_max_concurrency
        self.timeout_s = settings.store_timeout_s
        self.wait_s = min(settings.store_queue_wait_s, settings.store_timeout_s)
        self._where = where(settings)
        self._free = threading.BoundedSemaphore(self.slots)
        self._pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="store")
        # Health checks have threads of their own: they never wait behind requests.
        self._probes = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-health")
        self._lock = threading.Lock()
        self._busy = 0
        # Set when a call times out, cleared when one succeeds: while the store is known to hang,
        # a call that finds no free slot fails at once instead of waiting for one.
        self._hung = False

    @property
    def in_use(self) -> int:
        """Slots held by running (possibly stuck) store calls."""
        with self._lock:
            return self._busy

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on a store thread; raises :class:`Busy` or :class:`StoreUnavailable`."""
        if not self._free.acquire(timeout=0 if self._hung else self.wait_s):
            raise Busy(
                f"the {self._where} is slow to answer and {self.slots} requests already wait on it "
                f"(PAPERQA_STORE_MAX_CONCURRENCY); retry in a few seconds"
            )
        with self._lock:
            self._busy += 1
        try:
            future = self._pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._done)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            self._hung = True
            raise StoreUnavailable(
                f"the {self._where} did not answer within {self.timeout_s:g} s (TimeoutError; "
                "PAPERQA_STORE_TIMEOUT_S); is the server up and responsive?"
            ) from None

    def _done(self, future: Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._hung = False
        self._release()

    def _release(self) -> None:
        with self._lock:
            self._busy -= 1
        self._free.release()

    async def probe(self, fn: Callable[[], T], deadline_s: float) -> T:
        """``fn()`` on a health-check thread, outside the gate; ``TimeoutError`` after ``deadline_s``."""
        return await asyncio.wait_for(asyncio.wrap_future(self._probes.submit(fn)), deadline_s)

    def guard(self, collection: Any) -> GuardedCollection:
        return GuardedCollection(collection, self)

    def close(self) -> None:
        """Stop taking calls; threads stuck on a hung store are not waited for."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._probes.shutdown(wait=False, cancel_futures=True)


class GuardedCollection:
    """A Chroma collection whose store calls go through a :class:`StoreGate`; everything else
    (``name``, ``metadata``, ...) is the collection's own."""

    def __init__(self, collection: Any, gate: StoreGate) -> None:
        self._collection = collection
        self._gate = gate

    @property
    def unguarded(self) -> Any:
        return self._collection

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._collection, name)
        if name not in STORE_CALLS or not callable(attr):
            return attr

        def gated(*args: Any, **kwargs: Any) -> Any:
            return self._gate.call(attr, *args, **kwargs)

        gated.__name__ = name
        return gated

    def __repr__(self) -> str:
        return f"GuardedCollection({self._collection!r})"
