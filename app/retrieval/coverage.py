"""Does the corpus cover a question? One decision from several signals, shared by the service
(``/chat``, ``/v1/chat/completions``, ``/search``) and the evaluation.

The signals (:class:`~app.retrieval.types.CoverageSignals`, computed by ``PaperRetriever.search``):

- ``dense``: the best cosine similarity (MiniLM) between the question and any chunk;
- ``share``: the IDF-weighted share of the question's terms found in the best of the top papers;
- ``bm25``: a top paper's BM25 score over the most the question's terms could score (0 to 1);
- ``absent``: the IDF-weighted share of the question's terms that no chunk of the corpus holds;
- ``dense_gap``: how far the closest paper stands out: its best cosine minus the mean of the next
  four papers' (among the dense candidates);
- ``named``: the papers the question asks for by name ("What is Linformer?").

The decision (:func:`decide`):

1. a question that asks for a paper by name is covered;
2. else a small logistic regression over the five numbers says how likely the corpus covers it;
   covered from ``coverage_min_probability`` on (``PAPERQA_COVERAGE_MODEL=logistic``, the default),
   or, with ``PAPERQA_COVERAGE_MODEL=rules``: covered when the dense similarity clears
   ``relevance_floor`` and at most ``coverage_max_absent`` of the question's vocabulary is missing
   from the corpus, or when the lexical evidence alone is strong (``share`` and ``bm25`` over their
   thresholds).

The weights and thresholds are settings (``PAPERQA_COVERAGE_*``), fitted on the tuning questions by
``python -m eval calibrate --set dev+dev-coverage``; docs/evaluation.md ("Coverage") shows how both models and each signal
do on dev and test. Pure functions, tested without a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from app.core.settings import Settings
from app.retrieval.types import CoverageSignals, RetrievalResult, Suggestion

CoverageModelKind = Literal["logistic", "rules"]
FEATURES = ("dense", "share", "bm25", "absent", "dense_gap")


@dataclass(frozen=True)
class Coverage:
    covered: bool
    reason: str  # "named", "similar", "terms", "signals", or why not


@dataclass(frozen=True)
class CoverageModel:
    """The decision's parameters (from the settings; the evaluation fits and varies them)."""

    kind: CoverageModelKind = "logistic"
    # logistic: P(covered) = sigmoid(bias + sum(weight_f * signal_f))
    weights: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)  # FEATURES order
    bias: float = 0.0
    min_probability: float = 0.5
    # rules
    relevance_floor: float = 0.397
    max_absent: float = 1.0
    min_share: float = 1.01
    min_bm25: float = 1.01
    # each signal can be left out (the evaluation's ablation)
    use_names: bool = True
    left_out: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> CoverageModel:
        return cls(
            kind=settings.coverage_model,
            weights=(
                settings.coverage_weight_dense,
                settings.coverage_weight_share,
                settings.coverage_weight_bm25,
                settings.coverage_weight_absent,
                settings.coverage_weight_dense_gap,
            ),
            bias=settings.coverage_bias,
            min_probability=settings.coverage_min_probability,
            relevance_floor=settings.relevance_floor,
            max_absent=settings.coverage_max_absent,
            min_share=settings.coverage_min_share,
            min_bm25=settings.coverage_min_bm25,
            use_names=settings.coverage_names,
        )

    def without(self, signal: str) -> CoverageModel:
        """The same model with one signal left out ("names" or one of :data:`FEATURES`)."""
        if signal == "names":
            return replace(self, use_names=False)
        return replace(self, left_out=(*self.left_out, signal))

    def probability(self, signals: CoverageSignals) -> float:
        z = self.bias + sum(
            w * getattr(signals, f)
            for w, f in zip(self.weights, FEATURES, strict=True)
            if f not in self.left_out
        )
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


def decide(signals: CoverageSignals, model: CoverageModel, has_hits: bool = True) -> Coverage:
    """Covered or not, and why (see the module docstring)."""
    if not has_hits:
        return Coverage(False, "nothing was found")
    if model.use_names and signals.named:
        return Coverage(True, "named")
    if model.kind == "logistic":
        p = model.probability(signals)
        if p >= model.min_probability:
            return Coverage(True, "signals")
        return Coverage(False, f"the papers found do not match the question well enough (p={p:.2f})")
    dense_ok = "dense" not in model.left_out and signals.dense >= model.relevance_floor
    vocabulary_known = "absent" in model.left_out or signals.absent <= model.max_absent
    if dense_ok and vocabulary_known:
        return Coverage(True, "similar")
    terms_ok = "share" not in model.left_out and "bm25" not in model.left_out
    if terms_ok and signals.share >= model.min_share and signals.bm25 >= model.min_bm25:
        return Coverage(True, "terms")
    if dense_ok:
        return Coverage(False, "the corpus lacks the question's own terms")
    return Coverage(False, "no paper is close enough")


def decide_follow_up(
    signals: CoverageSignals,
    alone: Sequence[CoverageSignals],
    model: CoverageModel,
    has_hits: bool = True,
) -> Coverage:
    """:func:`decide` for a question whose other queries are each judged ``alone`` too: covered
    when the standalone query is, or when one of them is. A follow-up's raw text is one: "Which
    other papers make attention linear?" after an answer on Linformer needs no context to be in
    scope, and the previous question joined to it dilutes its terms."""
    coverage = decide(signals, model, has_hits)
    for other in alone:
        if coverage.covered:
            break
        decision = decide(other, model, has_hits)
        if decision.covered:
            coverage = Coverage(True, f"{decision.reason} (the follow-up's own words)")
    return coverage


def coverage_of(retrieval: RetrievalResult, model: CoverageModel) -> Coverage:
    """The decision for a retrieval result (:func:`decide_follow_up`)."""
    return decide_follow_up(retrieval.signals, retrieval.query_signals, model, bool(retrieval.hits))


def suggestions_for(retrieval: RetrievalResult, limit: int) -> list[Suggestion]:
    """The closest papers, offered when a question is refused (never as citations)."""
    return [
        Suggestion(paper_id=h.paper_id, title=h.title, score=h.score, similarity=h.best_dense, url=h.url)
        for h in retrieval.hits[:limit]
    ]


def is_covered(retrieval: RetrievalResult, settings: Settings) -> bool:
    """:func:`coverage_of` with the settings' model."""
    return coverage_of(retrieval, CoverageModel.from_settings(settings)).covered
