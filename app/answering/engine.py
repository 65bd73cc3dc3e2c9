"""The answering pipeline as a LlamaIndex query engine.

``PaperQAQueryEngine.query("...")`` (or ``aquery``) returns a LlamaIndex ``Response``: ``response``
is the checked answer, ``source_nodes`` are the cited passages (one node per citation, in marker
order, with ``paper_id``, ``title``, ``marker`` in their metadata), and ``metadata`` carries the
citations, the refusal, the sources, the timings and the rest of :class:`AnswerResult`. It works
wherever LlamaIndex takes a query engine, e.g. a ``QueryEngineTool`` for an agent.

The service (HTTP, ``python -m app.ask``, the evaluation) calls :meth:`events` and :meth:`answer`
of the same object, which take a whole conversation and stream.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Coroutine, Sequence
from typing import Any, TypeVar

from llama_index.core.base.response.schema import Response
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeWithScore, TextNode
from pydantic import PrivateAttr

from app.answering.pipeline import Answerer
from app.answering.types import AnswerResult, Event
from app.core.settings import RetrievalMode
from app.retrieval.queries import Turn

T = TypeVar("T")


def to_response(result: AnswerResult) -> Response:
    """A LlamaIndex ``Response`` for an :class:`AnswerResult`."""
    nodes = [
        NodeWithScore(
            node=TextNode(
                id_=f"{c.paper_id}#cited{c.marker}",
                text=c.passage,
                metadata={
                    "paper_id": c.paper_id,
                    "title": c.title,
                    "marker": c.marker,
                    **({"url": c.url} if c.url else {}),
                },
            ),
            score=c.score,
        )
        for c in result.citations
    ]
    data = result.model_dump(mode="json")
    metadata = {key: data[key] for key in data if key != "answer"}
    return Response(response=result.answer, source_nodes=nodes, metadata=metadata)


class PaperQAQueryEngine(CustomQueryEngine):
    """Cited answers over the indexed abstracts (see the module docstring)."""

    answerer: Answerer
    _loop: asyncio.AbstractEventLoop | None = PrivateAttr(default=None)
    _loop_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def backend_name(self) -> str:
        return self.answerer.backend_name

    # --- the service's interface -------------------------------------------------------------
    def events(
        self,
        messages: Sequence[Turn],
        *,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        stream: bool = True,
    ) -> AsyncGenerator[Event, None]:
        return self.answerer.events(messages, top_k=top_k, mode=mode, stream=stream)

    async def answer(
        self, messages: Sequence[Turn], *, top_k: int | None = None, mode: RetrievalMode | None = None
    ) -> AnswerResult:
        return await self.answerer.answer(messages, top_k=top_k, mode=mode)

    async def achat(self, messages: Sequence[Turn]) -> Response:
        """A conversation (earlier turns, then the question) answered as a ``Response``."""
        return to_response(await self.answer(messages))

    # --- LlamaIndex's interface ----------------------------------------------------------------
    async def acustom_query(self, query_str: str) -> Response:
        return await self.achat([{"role": "user", "content": query_str}])

    def custom_query(self, query_str: str) -> Response:
        """Synchronous ``query``: runs on this engine's own event loop thread, so the async model
        clients always live on one loop, however many sync calls come."""
        return self._run(self.acustom_query(query_str))

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="paperqa-engine", daemon=True).start()
                self._loop = loop
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Stop the sync-call loop, if one was started."""
        with self._loop_lock:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop = None
