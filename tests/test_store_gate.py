"""The store gate (fast tier): a bounded pool for store calls with a deadline per call, ``Busy``
when full, and health probes outside it. The real hung ``chroma run`` is in test_store_outage.py."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from app.core.errors import Busy, StoreUnavailable
from app.core.store_gate import StoreGate
from tests.helpers import hermetic_settings


def gate(**overrides: Any) -> StoreGate:
    values: dict[str, Any] = {"store_timeout_s": 0.5, "store_max_concurrency": 2, "store_queue_wait_s": 0.2}
    values.update(overrides)
    return StoreGate(hermetic_settings(**values))


class Collection:
    """A stand-in for a Chroma collection whose calls block until ``release`` is set."""

    name = "papers"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.release.set()

    def count(self) -> int:
        self.release.wait(10)
        return 7


def in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_a_call_goes_through_and_other_attributes_are_the_collection_s() -> None:
    g = gate()
    guarded = g.guard(Collection())
    assert guarded.count() == 7 and guarded.name == "papers" and g.in_use == 0
    g.close()


def test_a_hung_call_fails_after_its_deadline_and_keeps_its_slot() -> None:
    g, collection = gate(), Collection()
    collection.release.clear()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="did not answer within 0.5 s"):
        g.guard(collection).count()
    assert 0.4 < time.monotonic() - started < 5.0
    assert g.in_use == 1, "the stuck call still holds its slot"
    collection.release.set()
    deadline = time.monotonic() + 5
    while g.in_use and time.monotonic() < deadline:
        time.sleep(0.01)
    assert g.in_use == 0
    g.close()


def test_a_full_pool_answers_busy_instead_of_queueing() -> None:
    g, collection = gate(store_timeout_s=5.0), Collection()
    collection.release.clear()
    guarded = g.guard(collection)
    stuck = [in_thread(guarded.count) for _ in range(2)]
    deadline = time.monotonic() + 5
    while g.in_use < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(Busy, match="PAPERQA_STORE_MAX_CONCURRENCY") as caught:
        guarded.count()
    assert time.monotonic() - started < 4.0, "it waited for a slot instead of answering busy"
    assert caught.value.status == 503 and caught.value.retry_after_s
    collection.release.set()
    for thread, out in stuck:
        thread.join(10)
        assert out == [7]
    assert guarded.count() == 7
    g.close()


def test_while_the_store_hangs_a_full_pool_fails_at_once() -> None:
    g, collection = gate(store_max_concurrency=1, store_queue_wait_s=3.0), Collection()
    collection.release.clear()
    guarded = g.guard(collection)
    with pytest.raises(StoreUnavailable):
        guarded.count()  # times out; its thread still waits, holding the only slot
    started = time.monotonic()
    with pytest.raises(Busy):
        guarded.count()
    assert time.monotonic() - started < 2.0, "known hung: no wait for a slot"
    collection.release.set()
    deadline = time.monotonic() + 5
    while g.in_use and time.monotonic() < deadline:
        time.sleep(0.01)
    assert guarded.count() == 7
    g.close()


def test_a_health_probe_has_its_own_threads_and_deadline() -> None:
    g, collection = gate(store_timeout_s=5.0), Collection()
    collection.release.clear()
    guarded = g.guard(collection)
    stuck = [in_thread(guarded.count) for _ in range(2)]
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(g.probe(collection.count, 0.3))
    assert time.monotonic() - started < 3.0
    assert asyncio.run(g.probe(lambda: "up", 1.0)) == "up", "a probe does not wait behind the pool"
    collection.release.set()
    for thread, _ in stuck:
        thread.join(10)
    g.close()
