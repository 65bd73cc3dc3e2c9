"""The real answering pipeline on the bundled corpus: embedded model in process, and the OpenAI path
against a real llama.cpp OpenAI-compatible server on loopback (streaming and not)."""

from __future__ import annotations

import pytest

from app.answering.evidence import EvidenceFinder
from app.answering.llm import LocalBackend, OpenAIBackend, Usage
from app.answering.pipeline import Answerer
from app.answering.prompts import load_prompts
from app.answering.types import DeltaEvent, DoneEvent, ErrorEvent, SourcesEvent
from app.core.store import get_collections, make_client

pytestmark = pytest.mark.slow

IN_SCOPE = "Which papers quantize vision transformers after training, and how?"
OUT_OF_SCOPE = "What is a good recipe for sourdough bread with a crispy crust?"


class SpyBackend:
    """Delegates to a real backend and counts the calls (to prove the LLM was not called)."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0
        self.name, self.model = inner.name, inner.model

    def stream(self, messages, usage: Usage):
        self.calls += 1
        return self.inner.stream(messages, usage)

    async def complete(self, messages, usage: Usage) -> str:
        self.calls += 1
        return await self.inner.complete(messages, usage)

    async def aclose(self) -> None:  # the inner backend is session-owned
        pass


@pytest.fixture(scope="module")
def local_backend(bundled_index):
    backend = LocalBackend(bundled_index.settings.model_copy(update={"llm_timeout_s": 240}))
    yield backend


def answerer_for(index, backend, **overrides) -> Answerer:
    settings = index.settings.model_copy(update=overrides)
    papers = get_collections(make_client(settings), settings.collection)[1]
    evidence = EvidenceFinder(settings, papers, index.retriever.embed_model, index.retriever.lexical)
    return Answerer(settings, index.retriever, backend, load_prompts(settings.prompts_dir), evidence)


async def collect(answerer: Answerer, messages, **kwargs):
    return [event async for event in answerer.events(messages, **kwargs)]


def check_result_guarantees(result) -> None:
    """Citations are real sources, numbered in order, each with its evidence; every sentence of
    the answer cites one; nothing cut mid-sentence."""
    from app.answering.claims import answer_sentences

    source_ids = {s.paper_id for s in result.sources}
    assert all(c.paper_id in source_ids for c in result.citations)
    assert [c.marker for c in result.citations] == list(range(1, len(result.citations) + 1))
    for marker in range(len(result.citations) + 1, 30):
        assert f"[{marker}]" not in result.answer
    assert all(c.evidence for c in result.citations)
    assert all(s.markers for s in answer_sentences(result.answer)), result.answer
    assert result.answer.rstrip().endswith((".", "!", "?", "]")), result.answer


@pytest.mark.parametrize("strategy", ["generate", "compose"])
async def test_local_model_streams_a_checked_cited_answer(
    bundled_index, local_backend, strategy: str
) -> None:
    # A generous deadline: a loaded machine is slow, and no timing is tested here.
    answerer = answerer_for(bundled_index, local_backend, llm_timeout_s=240, answer_strategy=strategy)
    events = await collect(answerer, [{"role": "user", "content": IN_SCOPE}])
    errors = [e.message for e in events if isinstance(e, ErrorEvent)]
    assert errors == []
    assert isinstance(events[0], SourcesEvent) and events[0].sources
    assert isinstance(events[-1], DoneEvent)
    assert any(isinstance(e, DeltaEvent) for e in events)
    result = events[-1].result
    assert result.backend == "local" and not result.refused and result.fallback_reason is None
    assert result.strategy == strategy
    assert result.answer.strip()
    titles = " ".join(s.title for s in result.sources)
    assert "Post-Training Quantization" in titles
    check_result_guarantees(result)
    assert result.usage.completion_tokens > 0 and result.usage.prompt_tokens > 0
    # What the model wrote that the check refused is reported, never shown.
    for unsupported in result.unsupported:
        assert unsupported.sentence not in result.answer and unsupported.reason
    assert result.timings.first_token_ms is not None and result.timings.generate_ms > 0


async def test_out_of_scope_refuses_without_calling_the_model(bundled_index, local_backend) -> None:
    spy = SpyBackend(local_backend)
    result = await answerer_for(bundled_index, spy).answer([{"role": "user", "content": OUT_OF_SCOPE}])
    assert result.refused and result.citations == [] and result.sources == []
    assert spy.calls == 0
    assert "do not cover" in result.answer


async def test_follow_up_keeps_the_topic(bundled_index) -> None:
    answerer = answerer_for(bundled_index, None)
    messages = [
        {"role": "user", "content": "Which paper applies masked autoencoders to lidar point clouds?"},
        {
            "role": "assistant",
            "content": "Masked Autoencoder for Self-Supervised Pre-training on Lidar Point Clouds [1].",
        },
        {"role": "user", "content": "What does it mask?"},
    ]
    result = await answerer.answer(messages)
    assert not result.refused
    assert any("Lidar" in s.title for s in result.sources[:3]), [s.title for s in result.sources]


def after(answer: str, question: str) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": "Tell me about that."},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": question},
    ]


async def test_a_follow_up_about_the_paper_just_cited_is_answered_from_it(bundled_index) -> None:
    """Vague on its own ("those artifacts"), so the coverage signals alone would refuse it; it
    refers back to the paper the previous answer cited, which retrieval finds again: answered from
    that paper alone."""
    answer = (
        "Vision Transformers Need Registers [1] finds artifacts in the feature maps of ViTs and "
        "removes them with extra tokens."
    )
    result = await answerer_for(bundled_index, None).answer(
        after(answer, "Where in the image do those artifacts show up, and what are they?")
    )
    assert not result.refused, result.answer
    assert [c.title for c in result.citations] == ["Vision Transformers Need Registers"]
    check_result_guarantees(result)


async def test_a_follow_up_asking_for_other_papers_leaves_out_the_one_just_cited(bundled_index) -> None:
    answer = "Linformer [1] projects keys and values to a lower dimension, so attention is linear."
    result = await answerer_for(bundled_index, None).answer(
        after(answer, "Which other papers approximate self-attention in linear time?")
    )
    titles = [c.title for c in result.citations]
    assert titles and not any(t.startswith("Linformer") for t in titles), titles
    check_result_guarantees(result)


async def test_a_follow_up_in_scope_on_its_own_words_is_not_refused(bundled_index) -> None:
    """Joined to a previous turn that says nothing ("Tell me about that."), the follow-up's terms
    are diluted and its standalone query was refused; its own words are in scope."""
    answer = "Linformer [1] projects keys and values to a lower dimension, so attention is linear."
    result = await answerer_for(bundled_index, None).answer(
        after(answer, "Are there other efficient attention papers with linear complexity?")
    )
    assert not result.refused, result.answer
    assert result.citations and not any(c.title.startswith("Linformer") for c in result.citations)
    check_result_guarantees(result)


async def test_extractive_mode_cites_without_llm(bundled_index) -> None:
    result = await answerer_for(bundled_index, None).answer([{"role": "user", "content": IN_SCOPE}])
    assert result.backend == "extractive" and result.citations
    check_result_guarantees(result)


async def test_llm_down_falls_back_to_extractive(bundled_index, free_port) -> None:
    settings = bundled_index.settings.model_copy(
        update={"openai_base_url": f"http://127.0.0.1:{free_port}/v1", "llm_retries": 1, "llm_timeout_s": 5}
    )
    backend = OpenAIBackend(settings)
    result = await answerer_for(bundled_index, backend).answer([{"role": "user", "content": IN_SCOPE}])
    assert result.backend == "extractive" and result.fallback_reason
    assert "LLM endpoint error" in result.fallback_reason
    assert result.citations
    await backend.aclose()


@pytest.mark.parametrize("stream", [True, False])
async def test_openai_path_against_llama_cpp_server(bundled_index, llama_server, stream: bool) -> None:
    settings = bundled_index.settings.model_copy(
        update={
            "openai_base_url": llama_server,
            "openai_api_key": "test",
            "llm_model": "smollm2",
            "llm_timeout_s": 240,  # generous: a loaded CI machine is slow, and no timing is tested
            "max_answer_tokens": 80,
        }
    )
    backend = OpenAIBackend(settings)
    try:
        events = await collect(
            answerer_for(
                bundled_index, backend, llm_timeout_s=240, max_answer_tokens=80, answer_strategy="generate"
            ),
            [{"role": "user", "content": IN_SCOPE}],
            stream=stream,
        )
    finally:
        await backend.aclose()
    result = events[-1].result
    assert result.backend == "openai", result.fallback_reason
    assert result.answer.strip()
    # llama.cpp's server reports usage only without streaming; streamed answers are counted here.
    assert result.usage.counted_by == ("tiktoken" if stream else "backend")
    assert result.usage.completion_tokens > 0
    deltas = [e for e in events if isinstance(e, DeltaEvent)]
    assert bool(deltas) == stream
    check_result_guarantees(result)
