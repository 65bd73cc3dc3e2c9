"""``within_deadline``: model deltas under one deadline, the source always closed.

The hang-up case is the one that matters: sse-starlette cancels the task reading the stream with an
AnyIO cancel scope, which cancels again at every later await until the task ends. The source's own
clean-up (the local backend sets its stop flag, which ends its generation thread) must run, and
closing must not fail with "aclose(): asynchronous generator is already running".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import anyio
import pytest

from app.answering.deadline import within_deadline


class Source:
    """Yields a piece every ``gap_s``; its clean-up takes ``cleanup_s`` (shielded, like the backend's)."""

    def __init__(self, gap_s: float = 0.01, cleanup_s: float = 0.05, pieces: int = 1000) -> None:
        self.gap_s, self.cleanup_s, self.pieces = gap_s, cleanup_s, pieces
        self.stop_requested = False  # the backend's stop flag, set first thing when closed
        self.cleaned = False

    async def stream(self) -> AsyncIterator[str]:
        try:
            for i in range(self.pieces):
                await asyncio.sleep(self.gap_s)
                yield f"p{i} "
        finally:
            self.stop_requested = True
            await asyncio.shield(asyncio.sleep(self.cleanup_s))
            self.cleaned = True


async def collect(source: Source, deadline_s: float) -> list[str]:
    out = []
    async for piece in within_deadline(source.stream(), time.monotonic() + deadline_s):
        out.append(piece)
    return out


def test_every_piece_until_the_source_ends() -> None:
    source = Source(gap_s=0, cleanup_s=0, pieces=5)
    assert asyncio.run(collect(source, 5)) == [f"p{i} " for i in range(5)]
    assert source.cleaned


def test_a_source_past_the_deadline_times_out_and_is_closed() -> None:
    source = Source(gap_s=0.02, cleanup_s=0.01)
    with pytest.raises(TimeoutError):
        asyncio.run(collect(source, 0.1))
    assert source.cleaned


def test_a_hang_up_closes_the_source_under_repeated_cancellation() -> None:
    """The reader's task is cancelled by a cancel scope mid-wait (a client hanging up)."""
    source = Source(gap_s=0.05, cleanup_s=0.1)
    errors: list[BaseException] = []

    async def reader(scope: anyio.CancelScope) -> None:
        with scope:
            pieces = within_deadline(source.stream(), time.monotonic() + 10)
            try:
                async for _ in pieces:
                    pass
            except Exception as exc:  # what the chat stream would log as an unexpected failure
                errors.append(exc)
                raise

    async def main() -> None:
        scope = anyio.CancelScope()
        async with anyio.create_task_group() as group:
            group.start_soon(reader, scope)
            await anyio.sleep(0.12)  # the reader is waiting for its 3rd piece
            scope.cancel()
        await anyio.sleep(0.2)  # the source's clean-up, if it still runs elsewhere

    anyio.run(main)
    assert errors == []
    # Stop was asked for (the backend's thread then ends by itself); the shielded wait after it is
    # cancelled again by the scope, as the backend's is.
    assert source.stop_requested
