"""Evaluation metrics on hand-made cases (pure: no model, no store)."""

from __future__ import annotations

import math

import pytest

from eval import metrics as m

GOLD = ["Attention Is All You Need", "BERT: Pre-training of Deep Bidirectional Transformers"]
RANKED = [
    "Some Other Paper",
    "attention is all you need",  # same paper: case folded
    "A Third Paper",
    "BERT - Pre-training of Deep Bidirectional Transformers",  # punctuation folded
    "Fifth",
]


def test_titles_are_matched_after_normalisation() -> None:
    assert m.relevance(RANKED, GOLD) == [0, 1, 0, 1, 0]


def test_duplicates_in_a_ranking_count_once_at_their_first_rank() -> None:
    ranked = ["Attention Is All You Need", "ATTENTION IS ALL YOU NEED!", "x"]
    assert m.relevance(ranked, GOLD) == [1, 0]
    assert m.recall_at_k(ranked, GOLD, 10) == 0.5


@pytest.mark.parametrize(("k", "expected"), [(1, 0.0), (2, 1.0), (5, 1.0)])
def test_hit_at_k(k: int, expected: float) -> None:
    assert m.hit_at_k(RANKED, GOLD, k) == expected


@pytest.mark.parametrize(("k", "expected"), [(1, 0.0), (2, 0.5), (3, 0.5), (4, 1.0), (10, 1.0)])
def test_recall_at_k(k: int, expected: float) -> None:
    assert m.recall_at_k(RANKED, GOLD, k) == expected


def test_mrr_is_the_reciprocal_rank_of_the_first_gold_paper() -> None:
    assert m.mrr_at_k(RANKED, GOLD) == 0.5
    assert m.mrr_at_k(["Attention Is All You Need"], GOLD) == 1.0
    assert m.mrr_at_k(["a", "b"], GOLD) == 0.0
    # Beyond the cut-off counts as not found.
    assert m.mrr_at_k([*[f"p{i}" for i in range(10)], "Attention Is All You Need"], GOLD, 10) == 0.0


def test_ndcg_binary() -> None:
    # Gold at ranks 2 and 4; ideal has them at 1 and 2.
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert m.ndcg_at_k(RANKED, GOLD, 10) == pytest.approx(dcg / ideal)
    assert m.ndcg_at_k(list(reversed(GOLD)), GOLD, 10) == pytest.approx(1.0)
    assert m.ndcg_at_k(["x"], GOLD, 10) == 0.0


def test_ndcg_ideal_is_capped_at_k() -> None:
    gold = [f"g{i}" for i in range(5)]
    assert m.ndcg_at_k(gold[:2], gold, k=2) == pytest.approx(1.0)


def test_retrieval_metrics_are_undefined_without_gold() -> None:
    values = m.retrieval_metrics(RANKED, [])
    assert values and all(v is None for v in values.values())


def test_citation_precision_and_recall() -> None:
    cited = ["Attention is all you need", "Some Other Paper"]
    assert m.citation_precision(cited, GOLD) == 0.5
    assert m.citation_recall(cited, GOLD) == 0.5
    assert m.citation_precision(GOLD, GOLD) == 1.0
    assert m.citation_recall(GOLD, GOLD) == 1.0
    # Citing one paper twice counts it once.
    assert m.citation_precision([GOLD[0], GOLD[0].upper()], GOLD) == 1.0


def test_citation_metrics_undefined_cases() -> None:
    assert m.citation_precision([], GOLD) is None  # nothing cited: precision undefined
    assert m.citation_recall([], GOLD) == 0.0  # ...but nothing of the gold was cited
    assert m.citation_precision(["x"], []) is None
    assert m.citation_recall(["x"], []) is None


def test_hallucinated_citations_counts_titles_outside_the_corpus() -> None:
    corpus = [*GOLD, "Some Other Paper"]
    assert m.hallucinated_citations(["attention is all you need", "Some other paper!"], corpus) == 0
    assert m.hallucinated_citations(["A Paper Nobody Wrote", GOLD[1]], corpus) == 1
    assert m.hallucinated_citations([], corpus) == 0


def test_refusals() -> None:
    assert m.refusal_correct(refused=True, answerable=False)
    assert m.refusal_correct(refused=False, answerable=True)
    assert not m.refusal_correct(refused=True, answerable=True)
    assert not m.refusal_correct(refused=False, answerable=False)
    assert m.refusal_accuracy([True, True, False, True]) == 0.75
    assert m.false_refusal_rate([False, False, True, False]) == 0.25
    assert m.refusal_accuracy([]) is None


def test_key_fact_match() -> None:
    answer = "TSDAE beats earlier methods by up to 6.4 points and reaches 93.1% of in-domain performance."
    assert m.key_fact_match(answer, ["6.4 points", "93.1%"]) == 1.0
    assert m.key_fact_match(answer, ["6.4 POINTS", "LibriSpeech"]) == 0.5
    assert m.key_fact_match("", ["x"]) == 0.0
    assert m.key_fact_match(answer, []) is None


def test_percentile_nearest_rank() -> None:
    values = [15, 20, 35, 40, 50]
    assert m.percentile(values, 50) == 35  # rank ceil(2.5) = 3
    assert m.percentile(values, 95) == 50  # rank ceil(4.75) = 5
    assert m.percentile(values, 30) == 20  # rank ceil(1.5) = 2
    assert m.percentile(values, 100) == 50
    assert m.percentile(list(range(1, 101)), 95) == 95
    assert m.percentile([7.0], 50) == 7.0
    assert m.percentile([None, 3.0, None], 50) == 3.0
    assert m.percentile([], 50) is None
    with pytest.raises(ValueError):
        m.percentile(values, 0)


def test_latency_summary() -> None:
    summary = m.latency_summary([10.0, None, 30.0, 20.0])
    assert summary == {"n": 3, "p50": 20.0, "p95": 30.0, "mean": 20.0}


def test_aggregate_per_type_skips_undefined_values() -> None:
    rows = [
        {"type": "lookup", "metrics": {"hit@5": 1.0, "mrr@10": 1.0}},
        {"type": "lookup", "metrics": {"hit@5": 0.0, "mrr@10": 0.0}},
        {"type": "multi", "metrics": {"hit@5": 1.0, "mrr@10": 0.5}},
        {"type": "out_of_scope", "metrics": {"hit@5": None, "mrr@10": None}},
    ]
    out = m.aggregate(rows, ["hit@5", "mrr@10"])
    assert out["lookup"]["hit@5"] == {"mean": 0.5, "n": 2}
    assert out["multi"]["mrr@10"] == {"mean": 0.5, "n": 1}
    assert out["out_of_scope"]["hit@5"] == {"mean": None, "n": 0}
    assert out["all"]["hit@5"]["n"] == 3
    assert out["all"]["hit@5"]["mean"] == pytest.approx(2 / 3)
    assert out["all"]["mrr@10"]["mean"] == pytest.approx(0.5)


def test_floor_outcome() -> None:
    outcome = m.floor_outcome([0.5, 0.6, 0.25], [0.2, 0.35], floor=0.3)
    assert outcome["false_refusals"] == 1  # 0.25 refused
    assert outcome["missed_out_of_scope"] == 1  # 0.35 let through
    assert outcome["accuracy"] == pytest.approx(3 / 5)
    assert outcome["refusal_accuracy"] == 0.5
    assert outcome["false_refusal_rate"] == pytest.approx(1 / 3)


def test_calibrate_floor_separates_when_it_can() -> None:
    best = m.calibrate_floor([0.5, 0.6, 0.7], [0.1, 0.2, 0.3])
    assert best["accuracy"] == 1.0
    assert best["floor"] == 0.4  # midway between 0.3 and 0.5: widest margin


def test_calibrate_floor_ties_go_to_fewer_false_refusals() -> None:
    # The out-of-scope 0.5 sits among the answerable values: no floor gets everything right.
    answerable = [0.4, 0.6, 0.7]
    out_of_scope = [0.1, 0.5]
    best = m.calibrate_floor(answerable, out_of_scope)
    # 0.25 (refuses 0.1 only): 4/5 right, 0 false refusals; 0.55: 4/5 right, 1 false refusal.
    assert best["accuracy"] == pytest.approx(0.8)
    assert best["false_refusals"] == 0
    assert best["floor"] == 0.25


def test_calibrate_floor_needs_values() -> None:
    with pytest.raises(ValueError):
        m.calibrate_floor([], [])


def test_mean() -> None:
    assert m.mean([1, None, 0]) == 0.5
    assert m.mean([None]) is None


def test_answer_metrics_count_a_wrong_refusal_as_nothing_said() -> None:
    from eval.questions import Question
    from eval.runner import answer_metrics

    question = Question(
        id="q", type="detail", question="?", gold_titles=("Gold Paper",), key_facts=("6.4", "LibriSpeech")
    )
    titles = {"gold paper": "Gold Paper", "other": "Other"}
    answered = answer_metrics(
        question,
        "It gains 6.4 points [1].",
        ["Gold Paper", "Other"],
        False,
        titles,
        context="... 6.4 points on LibriSpeech ...",
    )
    assert answered["citation_precision"] == 0.5 and answered["citation_recall"] == 1.0
    assert answered["key_fact_match"] == 0.5 and answered["context_key_facts"] == 1.0
    assert answered["false_refusal"] == 0 and answered["oos_refused"] is None
    refused = answer_metrics(question, "The indexed papers do not cover this.", [], True, titles)
    assert refused["citation_precision"] is None  # nothing cited
    assert refused["citation_recall"] == 0.0 and refused["key_fact_match"] == 0.0
    assert refused["context_key_facts"] == 0.0 and refused["false_refusal"] == 1
    out = Question(id="o", type="out_of_scope", question="?")
    assert answer_metrics(out, "no", [], True, titles)["refusal_correct"] == 1
    assert answer_metrics(out, "yes [1]", ["Other"], False, titles)["oos_refused"] == 0
    assert answer_metrics(out, "yes [1]", ["Made Up"], False, titles)["hallucinated_citations"] == 1
