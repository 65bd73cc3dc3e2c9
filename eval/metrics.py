"""Evaluation metrics as pure functions: ranked titles, cited titles and answers in, numbers out.

Titles are compared after :func:`app.core.records.normalize_title` (case, accents, punctuation
folded), the same key the ingestion uses to decide that two entries are one paper.

Conventions:
- Retrieval metrics use binary relevance (a paper is gold or not). A ranking is de-duplicated by
  normalised title first, so a paper listed twice counts once, at its first rank.
- A metric that is undefined for a question returns ``None`` (for example recall when there is no
  gold paper, or citation precision of an answer that cites nothing). :func:`mean` and
  :func:`aggregate` skip ``None``; the count of questions a mean is over is reported next to it.
- Percentiles use the **nearest-rank** method: the p-th percentile of n sorted values is the value
  at rank ``ceil(p / 100 * n)`` (1-based). It is always one of the observed values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from app.core.records import normalize_title

Number = float | int | None


# --- titles ------------------------------------------------------------------------------------
def title_keys(titles: Iterable[str]) -> list[str]:
    """Normalised titles, first occurrence kept, order kept."""
    return list(dict.fromkeys(normalize_title(t) for t in titles if t and t.strip()))


def relevance(ranked: Sequence[str], gold: Iterable[str]) -> list[int]:
    """Binary relevance of each distinct ranked title: 1 if it is a gold title, else 0."""
    wanted = set(title_keys(gold))
    return [1 if key in wanted else 0 for key in title_keys(ranked)]


# --- retrieval ---------------------------------------------------------------------------------
def hit_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float | None:
    """1.0 if any gold title is among the first ``k`` ranked titles, else 0.0 (None: no gold)."""
    gold_keys = title_keys(gold)
    if not gold_keys:
        return None
    return 1.0 if any(relevance(ranked, gold_keys)[:k]) else 0.0


def recall_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float | None:
    """Share of the gold titles found among the first ``k`` ranked titles (None: no gold)."""
    gold_keys = title_keys(gold)
    if not gold_keys:
        return None
    return sum(relevance(ranked, gold_keys)[:k]) / len(gold_keys)


def mrr_at_k(ranked: Sequence[str], gold: Iterable[str], k: int = 10) -> float | None:
    """Reciprocal rank of the first gold title within the first ``k`` (0.0 if none; None: no gold)."""
    gold_keys = title_keys(gold)
    if not gold_keys:
        return None
    for rank, rel in enumerate(relevance(ranked, gold_keys)[:k], start=1):
        if rel:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], gold: Iterable[str], k: int = 10) -> float | None:
    """Binary nDCG@k: ``sum rel_i / log2(i + 1)`` over the ideal ranking's (gold first) value."""
    gold_keys = title_keys(gold)
    if not gold_keys:
        return None
    dcg = sum(rel / math.log2(i + 1) for i, rel in enumerate(relevance(ranked, gold_keys)[:k], start=1))
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(gold_keys), k) + 1))
    return dcg / ideal


def retrieval_metrics(ranked: Sequence[str], gold: Sequence[str]) -> dict[str, float | None]:
    """The retrieval metrics recorded for every question (all None for a question with no gold)."""
    return {
        "hit@1": hit_at_k(ranked, gold, 1),
        "hit@3": hit_at_k(ranked, gold, 3),
        "hit@5": hit_at_k(ranked, gold, 5),
        "hit@10": hit_at_k(ranked, gold, 10),
        "recall@3": recall_at_k(ranked, gold, 3),
        "recall@5": recall_at_k(ranked, gold, 5),
        "recall@8": recall_at_k(ranked, gold, 8),
        "recall@10": recall_at_k(ranked, gold, 10),
        "mrr@10": mrr_at_k(ranked, gold, 10),
        "ndcg@10": ndcg_at_k(ranked, gold, 10),
    }


# --- citations ---------------------------------------------------------------------------------
def citation_precision(cited: Sequence[str], gold: Iterable[str]) -> float | None:
    """Share of the distinct cited papers that are gold. None when nothing is cited or no gold."""
    cited_keys, gold_keys = title_keys(cited), set(title_keys(gold))
    if not cited_keys or not gold_keys:
        return None
    return sum(1 for key in cited_keys if key in gold_keys) / len(cited_keys)


def citation_recall(cited: Sequence[str], gold: Iterable[str]) -> float | None:
    """Share of the gold papers that the answer cites. None when there is no gold paper."""
    gold_keys = title_keys(gold)
    if not gold_keys:
        return None
    cited_keys = set(title_keys(cited))
    return sum(1 for key in gold_keys if key in cited_keys) / len(gold_keys)


def hallucinated_citations(cited: Sequence[str], corpus_titles: Iterable[str]) -> int:
    """Cited titles that name no paper of the corpus. The service guarantees this is 0."""
    known = set(title_keys(corpus_titles))
    return sum(1 for key in title_keys(cited) if key not in known)


# --- refusals ----------------------------------------------------------------------------------
def refusal_correct(refused: bool, answerable: bool) -> bool:
    """Right behaviour: answer an answerable question, refuse one the corpus does not cover."""
    return refused != answerable


def refusal_accuracy(refused: Sequence[bool]) -> float | None:
    """Share of out-of-scope questions that were refused (give only out-of-scope outcomes)."""
    return sum(1 for r in refused if r) / len(refused) if refused else None


def false_refusal_rate(refused: Sequence[bool]) -> float | None:
    """Share of answerable questions that were refused (give only answerable outcomes)."""
    return sum(1 for r in refused if r) / len(refused) if refused else None


# --- answers -----------------------------------------------------------------------------------
def key_fact_match(answer: str, key_facts: Sequence[str]) -> float | None:
    """Share of the key facts found in the answer, case-insensitively (None: no key facts)."""
    facts = [f for f in key_facts if f.strip()]
    if not facts:
        return None
    text = answer.casefold()
    return sum(1 for fact in facts if fact.casefold() in text) / len(facts)


# --- latency -----------------------------------------------------------------------------------
def percentile(values: Iterable[float | None], p: float) -> float | None:
    """Nearest-rank percentile: the value at rank ``ceil(p/100 * n)`` of the sorted values."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    rank = max(1, math.ceil(p / 100 * len(data)))
    return data[rank - 1]


def latency_summary(values: Iterable[float | None]) -> dict[str, float | int | None]:
    data = [v for v in values if v is not None]
    return {
        "n": len(data),
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "mean": sum(data) / len(data) if data else None,
    }


# --- aggregation -------------------------------------------------------------------------------
def mean(values: Iterable[Number]) -> float | None:
    data = [float(v) for v in values if v is not None]
    return sum(data) / len(data) if data else None


def aggregate(
    rows: Sequence[Mapping[str, object]],
    metric_names: Sequence[str],
    group: Callable[[Mapping[str, object]], str] = lambda row: str(row["type"]),
    metrics_of: Callable[[Mapping[str, object]], Mapping[str, Number]] = (
        lambda row: row["metrics"]  # type: ignore[return-value]
    ),
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Mean of each metric per group and over all rows: ``{group: {metric: {mean, n}}}``.

    The ``"all"`` group holds every row. ``n`` counts the rows where the metric is defined.
    """
    groups: dict[str, list[Mapping[str, object]]] = {"all": list(rows)}
    for row in rows:
        groups.setdefault(group(row), []).append(row)
    out: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for name, members in groups.items():
        out[name] = {}
        for metric in metric_names:
            values = [metrics_of(row).get(metric) for row in members]
            defined = [v for v in values if v is not None]
            out[name][metric] = {"mean": mean(defined), "n": len(defined)}
    return out


# --- relevance floor ---------------------------------------------------------------------------
def floor_outcome(
    answerable: Sequence[float], out_of_scope: Sequence[float], floor: float
) -> dict[str, float | int]:
    """How a floor classifies questions by top similarity (covered when ``sim >= floor``)."""
    false_refusals = sum(1 for s in answerable if s < floor)
    missed = sum(1 for s in out_of_scope if s >= floor)
    total = len(answerable) + len(out_of_scope)
    return {
        "floor": floor,
        "accuracy": (total - false_refusals - missed) / total if total else 0.0,
        "false_refusals": false_refusals,
        "missed_out_of_scope": missed,
        "refusal_accuracy": (len(out_of_scope) - missed) / len(out_of_scope) if out_of_scope else 0.0,
        "false_refusal_rate": false_refusals / len(answerable) if answerable else 0.0,
    }


def calibrate_floor(
    answerable: Sequence[float], out_of_scope: Sequence[float], decimals: int = 3
) -> dict[str, float | int]:
    """The floor that best separates answerable from out-of-scope questions by top similarity.

    Candidates: below every value, midway between each pair of neighbouring distinct values (for
    the widest margin on both sides), and above every value; each rounded to ``decimals``. The one
    with the highest accuracy wins; ties go to fewer false refusals, then to the lower floor.
    """
    values = sorted(set(round(v, 6) for v in [*answerable, *out_of_scope]))
    if not values:
        raise ValueError("no similarities to calibrate on")
    step = 10.0**-decimals
    candidates = {round(values[0] - step, decimals), round(values[-1] + step, decimals)}
    candidates.update(round((a + b) / 2, decimals) for a, b in zip(values, values[1:], strict=False))
    outcomes = [floor_outcome(answerable, out_of_scope, c) for c in sorted(candidates)]
    return max(outcomes, key=lambda o: (o["accuracy"], -o["false_refusals"], -o["floor"]))
