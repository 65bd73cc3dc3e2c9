"""Pure parts of retrieval and answering, without a model: fusion, grouping, budgets, prompts."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.answering.context import build_messages, count_tokens, make_citations, sources_from_evidence
from app.answering.evidence import PaperEvidence, Sentence
from app.answering.prompts import PromptError, check_template, load_prompts
from app.core.settings import PROJECT_ROOT
from app.retrieval.queries import standalone_queries
from app.retrieval.search import PaperHit, Passage, cosine_from_chroma, group_by_paper, rrf


def passage(chunk: str, paper: str, score: float, text: str = "text") -> Passage:
    return Passage(chunk_id=chunk, paper_id=paper, title=f"Title {paper}", text=text, score=score)


def test_rrf_rewards_agreement() -> None:
    fused = rrf([["a", "b", "c"], ["b", "a", "d"]], k=60)
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["a"] == fused["b"]
    assert fused["c"] == pytest.approx(1 / 63)
    assert max(fused, key=fused.get) in {"a", "b"} and fused["d"] < fused["c"] + 1e-12


def test_group_by_paper_one_hit_per_paper_best_first() -> None:
    hits = group_by_paper(
        [passage("p1#0", "p1", 0.2), passage("p2#0", "p2", 0.5), passage("p1#1", "p1", 0.9)],
        top_k=5,
        per_paper=1,
    )
    assert [h.paper_id for h in hits] == ["p1", "p2"]
    assert [p.chunk_id for p in hits[0].passages] == ["p1#1"]
    assert hits[0].score == 0.9


def test_group_by_paper_top_k() -> None:
    hits = group_by_paper([passage(f"c{i}", f"p{i}", i) for i in range(10)], top_k=3, per_paper=2)
    assert [h.paper_id for h in hits] == ["p9", "p8", "p7"]


def test_cosine_from_chroma_inverts_exp_distance() -> None:
    import math

    for cos in (0.9, 0.3, -0.2):
        assert cosine_from_chroma(math.exp(-(1 - cos))) == pytest.approx(cos)


def hit(paper: str, text: str) -> PaperHit:
    return PaperHit(
        paper_id=paper,
        title=f"A Paper Called {paper}",
        score=1.0,
        passages=(passage(paper + "#0", paper, 1.0, text),),
    )


def evidence(paper: str, text: str) -> PaperEvidence:
    return PaperEvidence(
        paper, f"A Paper Called {paper}", text, (Sentence(text, 0, len(text)),), (1.0,), (0,)
    )


def test_sources_carry_their_evidence_within_the_budget() -> None:
    long = "word " * 2000
    found = [evidence("a", long), evidence("b", long), evidence("c", "short text")]
    sources = sources_from_evidence(found, [hit("a", "x"), hit("b", "x"), hit("c", "x")], 300)
    assert [s.n for s in sources] == [1, 2, 3]
    total = sum(count_tokens(f"[{s.n}] {s.title}: {s.passage}") for s in sources)
    assert total <= 300 + 3 * 2  # the " …" marks
    assert sources[2].passage == "short text"
    assert sources[2].evidence[0].text == "short text" and sources[2].evidence[0].end == 10


def test_standalone_queries_keep_raw_question_first() -> None:
    assert standalone_queries([{"role": "user", "content": " q "}]) == ["q"]
    msgs = [
        {"role": "user", "content": "What is RepQ-ViT?"},
        {"role": "assistant", "content": "A method [1]."},
        {"role": "user", "content": "Which datasets?"},
    ]
    assert standalone_queries(msgs) == ["Which datasets?", "What is RepQ-ViT? Which datasets?"]


def test_prompts_load_and_placeholders_are_checked(tmp_path: Path) -> None:
    prompts = load_prompts(PROJECT_ROOT / "prompts")
    assert "{sources}" in prompts.answer
    with pytest.raises(PromptError, match="missing \\['question'\\]"):
        check_template("answer", "{sources} only")
    with pytest.raises(PromptError, match="unknown \\['oops'\\]"):
        check_template("answer", "{sources} {question} {oops}")
    with pytest.raises(PromptError, match="literal braces"):
        check_template("answer", "{sources} {question} {")
    with pytest.raises(PromptError, match="prompt file missing"):
        load_prompts(tmp_path)


def test_build_messages_numbers_sources_and_keeps_short_history() -> None:
    prompts = load_prompts(PROJECT_ROOT / "prompts")
    sources = sources_from_evidence(
        [evidence("a", "alpha text"), evidence("b", "beta text")], [hit("a", "x"), hit("b", "x")], 400
    )
    history = [{"role": "user", "content": "x" * 5000}, {"role": "assistant", "content": "y"}]
    msgs = build_messages(prompts, sources, [*history, {"role": "user", "content": "Why?"}])
    assert msgs[0]["role"] == "system"
    assert "[1] A Paper Called a: alpha text" in msgs[-1]["content"]
    assert "[2] A Paper Called b" in msgs[-1]["content"]
    assert len(msgs[1]["content"]) <= 400


def test_make_citations_maps_markers_to_sources() -> None:
    sources = sources_from_evidence(
        [evidence("a", "alpha"), evidence("b", "beta")], [hit("a", "x"), hit("b", "x")], 400
    )
    cites = make_citations(sources, [1, 0])
    assert [(c.marker, c.paper_id) for c in cites] == [(1, "b"), (2, "a")]


def test_rrf_weights_scale_each_list() -> None:
    fused = rrf([["a", "b"], ["b", "a"]], k=60, weights=[0.5, 1.0])
    assert fused["b"] == pytest.approx(0.5 / 62 + 1 / 61)
    assert fused["b"] > fused["a"]


def test_query_weights_scale_a_vague_follow_up() -> None:
    from app.retrieval.queries import query_weights

    assert query_weights(["what is linformer"], 0.5, 4) == [1.0]
    # "mask" is the only content word: 1/4 of the raw weight.
    assert query_weights(["What does it mask?", "Which paper ... What does it mask?"], 0.5, 4) == [0.125, 1.0]
    long = "Has anyone applied the selective state space model to speech recognition?"
    assert query_weights([long, "x " + long], 0.5, 4) == [0.5, 1.0]
    assert query_weights(["What does it mask?", "y"], 0.5, 0) == [0.5, 1.0]  # scaling off


@pytest.mark.parametrize(
    ("question", "papers"),
    [
        ("Which papers quantize vision transformers after training?", 7),
        ("What work is there on handwriting recognition?", 7),
        ("Which paper introduced Linformer?", 3),
        ("How does Linformer approximate self-attention?", 3),
    ],
)
def test_a_question_asking_for_several_papers_reads_top_k_many(question: str, papers: int) -> None:
    from app.answering.compose import papers_to_read

    assert papers_to_read(question, top_k=3, top_k_many=7) == papers
