"""ingest.pipeline.BatchWriter: batches are written one at a time, in order, on one thread, while the
caller prepares the next; results and errors come back on the caller's thread. No store, no model:
the write itself (``_store_batch``) and the store's "being written" mark are replaced by recorders."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from ingest import pipeline
from ingest.pipeline import BatchWriter, _ChunkedBatch

NO_STORE: Any = SimpleNamespace(chunks="the chunk collection")  # only the recorders below see it


def batch(tag: str) -> _ChunkedBatch:
    return _ChunkedBatch(papers=[], nodes_by_paper={tag: []})


def tag_of(b: _ChunkedBatch) -> str:
    return next(iter(b.nodes_by_paper))


@pytest.fixture
def recorder(monkeypatch) -> dict[str, Any]:
    log: dict[str, Any] = {"started": [], "finished": [], "threads": set(), "active": 0, "max_active": 0}
    lock = threading.Lock()

    def store(b: _ChunkedBatch, vectors: Any, _store: Any) -> int:
        with lock:
            log["active"] += 1
            log["max_active"] = max(log["max_active"], log["active"])
            log["started"].append(tag_of(b))
            log["threads"].add(threading.get_ident())
        time.sleep(0.05)
        if tag_of(b) == "boom":
            with lock:
                log["active"] -= 1
            raise RuntimeError("the store refused the batch")
        with lock:
            log["active"] -= 1
            log["finished"].append(tag_of(b))
        return len(vectors)

    def mark_writing(chunks: Any) -> None:
        log["marked"].append((chunks, list(log["started"])))

    log["marked"] = []
    monkeypatch.setattr(pipeline, "_store_batch", store)
    monkeypatch.setattr(pipeline.lexicon, "mark_writing", mark_writing)
    return log


def test_batches_are_written_in_order_one_at_a_time_off_the_callers_thread(recorder) -> None:
    done: list[tuple[str, int, int]] = []
    caller = threading.get_ident()
    with BatchWriter(NO_STORE) as writer:
        for i in range(5):
            writer.submit(
                batch(f"b{i}"),
                [0.0] * (i + 1),
                lambda b, n, s: done.append((tag_of(b), n, threading.get_ident())),
            )
    assert recorder["started"] == recorder["finished"] == [f"b{i}" for i in range(5)]
    # the store is marked as being written once, before the first write
    assert recorder["marked"] == [("the chunk collection", [])] and writer.started
    assert recorder["max_active"] == 1
    assert len(recorder["threads"]) == 1 and caller not in recorder["threads"]
    # every write reported once, in order, with its chunk count, on the caller's thread
    assert done == [(f"b{i}", i + 1, caller) for i in range(5)]


def test_the_caller_prepares_the_next_batch_while_one_is_written(recorder) -> None:
    with BatchWriter(NO_STORE) as writer:
        writer.submit(batch("first"), [0.0], lambda *_: None)
        assert recorder["finished"] == []  # submit returned before the write ended
        time.sleep(0.01)
        assert recorder["started"] == ["first"]  # ... and the write is under way meanwhile
    assert recorder["finished"] == ["first"]  # leaving the block waited for it


def test_a_failed_write_is_raised_to_the_caller_and_nothing_after_it_is_written(recorder) -> None:
    done: list[str] = []
    with pytest.raises(RuntimeError, match="refused"), BatchWriter(NO_STORE) as writer:
        writer.submit(batch("ok"), [0.0], lambda b, *_: done.append(tag_of(b)))
        writer.submit(batch("boom"), [0.0], lambda b, *_: done.append(tag_of(b)))
        writer.submit(batch("after"), [0.0], lambda b, *_: done.append(tag_of(b)))
    assert done == ["ok"]
    assert "after" not in recorder["started"]


def test_an_error_in_the_caller_waits_for_the_write_in_flight(recorder) -> None:
    with pytest.raises(KeyError), BatchWriter(NO_STORE) as writer:
        writer.submit(batch("in-flight"), [0.0], lambda *_: None)
        raise KeyError("the caller failed")
    assert recorder["finished"] == ["in-flight"]  # not abandoned half-way


def test_a_writer_given_nothing_marks_nothing(recorder) -> None:
    with BatchWriter(NO_STORE) as writer:
        pass
    assert not writer.started and recorder["marked"] == [] and recorder["started"] == []
