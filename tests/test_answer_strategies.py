"""The answer strategies over the fake store (fast tier, no model): evidence with offsets, the
extract layout, compose and generate with a scripted model whose sentences the claim check
accepts, replaces or drops, and the trimming of a reply cut mid-sentence."""

from __future__ import annotations

from typing import Any

from app.answering.types import AnswerResult
from app.services import Services
from tests.fakes import FAKE_PAPERS, ScriptedBackend, with_backend

QUESTION = "Which papers quantize vision transformers after training?"
ABSTRACTS = {p["id"]: p["abstract"] for p in FAKE_PAPERS}


def ask(question: str = QUESTION) -> list[dict[str, Any]]:
    return [{"role": "user", "content": question}]


async def answer(services: Services, question: str = QUESTION) -> AnswerResult:
    return await services.engine.answer(ask(question))


async def test_extract_answers_from_the_evidence_with_offsets(contract_services: Services) -> None:
    result = await answer(contract_services)
    assert result.strategy == "extract" and result.backend == "extractive" and result.unsupported == []
    assert result.citations
    for citation in result.citations:
        abstract = ABSTRACTS[citation.paper_id]
        assert citation.evidence
        for span in citation.evidence:
            assert abstract[span.start : span.end] == span.text
    # one line per paper, its short name cited first
    first = result.citations[0]
    assert result.answer.splitlines()[0].lstrip("- ").startswith(f"{first.title.split(':')[0]} [1]: ")
    for source in result.sources:
        assert source.evidence and source.passage == " ".join(e.text for e in source.evidence)


async def test_a_question_for_one_paper_is_answered_from_its_best_paper(contract_services: Services) -> None:
    result = await answer(contract_services, "Which paper masks voxels of lidar point clouds?")
    assert [c.paper_id for c in result.citations] == ["lidar-mae"]
    assert "Masking 70 percent" in result.answer or "mask voxels" in result.answer


async def test_compose_keeps_a_supported_sentence(contract_services: Services) -> None:
    backend = ScriptedBackend("RepQ-ViT decouples quantization and inference with scale reparameterization.")
    services = with_backend(contract_services, backend, answer_strategy="compose")
    result = await answer(services, "What does RepQ-ViT decouple?")
    assert result.strategy == "compose" and result.backend == "openai"
    assert result.unsupported == []
    assert result.answer == (
        "RepQ-ViT [1]: RepQ-ViT decouples quantization and inference with scale reparameterization."
    )
    assert len(backend.calls) == 1 and "What does RepQ-ViT decouple?" in backend.calls[0][0]["content"]


async def test_compose_replaces_an_invented_claim_with_the_evidence(contract_services: Services) -> None:
    backend = ScriptedBackend("RepQ-ViT reaches 91.2% accuracy with GPTQ-style rounding.")
    services = with_backend(contract_services, backend, answer_strategy="compose")
    result = await answer(services, "What does RepQ-ViT decouple?")
    assert "91.2" not in result.answer and "GPTQ" not in result.answer
    [unsupported] = result.unsupported
    assert unsupported.action == "replaced" and "91.2" in unsupported.reason
    assert unsupported.replacement == result.answer
    assert "scale reparameterization" in result.answer


async def test_generate_trims_a_reply_cut_mid_sentence(contract_services: Services) -> None:
    sources = (await answer(contract_services)).sources
    ptq = next(s.n for s in sources if s.paper_id == "vit-ptq")
    backend = ScriptedBackend(
        f"We quantize vision transformers after training with a small calibration set [{ptq}]. "
        f"It is also known as DopQ-ViT [{ptq}] ("
    )
    services = with_backend(contract_services, backend, answer_strategy="generate")
    result = await answer(services)
    assert result.trimmed is True
    assert result.answer == "We quantize vision transformers after training with a small calibration set [1]."
    [cut] = result.unsupported
    assert cut.action == "dropped" and "cut off" in cut.reason and "DopQ-ViT" in cut.sentence


async def test_generate_streams_only_checked_sentences(contract_services: Services) -> None:
    from app.answering.types import DeltaEvent, DoneEvent

    sources = (await answer(contract_services)).sources
    ptq = next(s.n for s in sources if s.paper_id == "vit-ptq")
    backend = ScriptedBackend(
        f"Eight-bit weights keep top-1 accuracy within 0.5 points [{ptq}]. "
        f"Eight-bit weights keep top-1 accuracy within 9.5 points [{ptq}]. "
    )
    services = with_backend(contract_services, backend, answer_strategy="generate")
    events = [e async for e in services.engine.events(ask())]
    streamed = "".join(e.text for e in events if isinstance(e, DeltaEvent))
    done = next(e.result for e in events if isinstance(e, DoneEvent))
    assert "9.5" not in streamed and "9.5" not in done.answer, "an unsupported number never reaches the user"
    assert "0.5 points" in streamed
    [unsupported] = done.unsupported
    assert unsupported.action == "replaced" and "9.5" in unsupported.reason
    assert unsupported.replacement and unsupported.replacement.split(": ", 1)[1] in streamed


async def test_no_sentence_passing_the_check_is_a_refusal_not_an_empty_answer(
    contract_services: Services, monkeypatch
) -> None:
    """When not one sentence passes the claim check, not even the evidence (a checker fault once
    did this to "What is Swin Transformer V2?"), the answer is a refusal that says so, with the
    papers found offered as suggestions, never an empty text presented as an answer."""
    from app.answering import strategies
    from app.answering.claims import Verdict

    monkeypatch.setattr(strategies, "judge", lambda *args, **kwargs: Verdict(False, "refused by the test"))
    result = await answer(contract_services)
    assert result.refused and result.answer == contract_services.prompts.no_answer
    assert result.coverage == "no sentence of the papers found passed the claim check"
    assert result.suggestions and result.sources and not result.citations
    assert result.unsupported and all(u.reason == "refused by the test" for u in result.unsupported)
