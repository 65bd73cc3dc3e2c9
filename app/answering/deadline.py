"""A stream of model deltas under one deadline, applied to each wait for the model.

Time spent by the consumer between pieces (a slow client, say) is not the model's: the deadline is
checked and enforced only while waiting for the next piece.

The wait runs in the caller's own task (``asyncio.timeout``), not in a task of its own as
``asyncio.wait_for`` would: when a client hangs up, sse-starlette cancels the reading task through
an AnyIO cancel scope, which cancels again at every later await. With a task of its own, the
source's ``__anext__`` was still running when it was closed ("aclose(): asynchronous generator is
already running"), logged as an unexpected failure (tests/test_deadline.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator


async def within_deadline(pieces: AsyncIterator[str], deadline: float) -> AsyncGenerator[str, None]:
    """Yield ``pieces`` until they end; TimeoutError once ``time.monotonic()`` passes ``deadline``
    while waiting. The source is closed in every case (which stops generation)."""
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            try:
                async with asyncio.timeout(remaining):
                    piece = await anext(pieces)
            except StopAsyncIteration:
                return
            yield piece
    finally:
        aclose = getattr(pieces, "aclose", None)
        if aclose is not None:
            await aclose()
