"""Calibrating and reporting the coverage decision (:mod:`app.retrieval.coverage`) from the
signals the evaluation records for every question (``row["signals"]``).

Pure functions over rows: the decision itself is the service's own :func:`decide`; here it is
applied with other thresholds, with one signal left out at a time, and compared with a small
logistic regression over the same signals. CoverageModel are chosen on dev only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from app.retrieval.coverage import FEATURES, CoverageModel, decide_follow_up
from app.retrieval.types import CoverageSignals

Row = dict[str, Any]
SIGNALS = ("names", "dense", "share", "bm25", "absent", "dense_gap")
# The grid the thresholds are chosen from (dev): wide enough to include "off" for each.
FLOORS = tuple(round(0.25 + 0.01 * i, 2) for i in range(31))  # 0.25 .. 0.55
MAX_ABSENT = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 1.0)
MIN_SHARE = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.01)
MIN_BM25 = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.01)


def signals_of(row: Row, s: dict[str, Any] | None = None) -> CoverageSignals:
    """A row's recorded coverage signals (``s``: one of its follow-up's own, else its main ones)."""
    s = row["signals"] if s is None else s
    return CoverageSignals(
        dense=float(s["dense"]),
        share=float(s["share"]),
        bm25=float(s["bm25"]),
        absent=float(s["absent"]),
        dense_gap=float(s.get("dense_gap", 0.0)),  # rows recorded before the signal existed: 0
        named=tuple(s.get("named") or ()),
    )


def covered(row: Row, model: CoverageModel) -> bool:
    """The service's decision (``decide_follow_up``) replayed from a row's recorded signals."""
    alone = [signals_of(row, s) for s in row.get("query_signals") or ()]
    return decide_follow_up(signals_of(row), alone, model, has_hits=bool(row.get("ranked_titles"))).covered


@dataclass(frozen=True)
class Outcome:
    """How a decision does on a set of questions."""

    answerable: int
    answerable_refused: int
    out_of_scope: int
    out_of_scope_refused: int
    near_topic: int
    near_topic_refused: int
    named: int
    named_refused: int

    @property
    def false_refusal_rate(self) -> float:
        return self.answerable_refused / self.answerable if self.answerable else 0.0

    @property
    def oos_refusal_rate(self) -> float:
        return self.out_of_scope_refused / self.out_of_scope if self.out_of_scope else 0.0

    @property
    def near_refusal_rate(self) -> float:
        return self.near_topic_refused / self.near_topic if self.near_topic else 0.0

    @property
    def named_refusal_rate(self) -> float:
        return self.named_refused / self.named if self.named else 0.0

    @property
    def balanced_accuracy(self) -> float:
        return ((1 - self.false_refusal_rate) + self.oos_refusal_rate) / 2

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "false_refusal_rate": round(self.false_refusal_rate, 4),
            "oos_refusal_rate": round(self.oos_refusal_rate, 4),
            "near_refusal_rate": round(self.near_refusal_rate, 4),
            "named_refusal_rate": round(self.named_refusal_rate, 4),
            "balanced_accuracy": round(self.balanced_accuracy, 4),
        }


def outcome(rows: Sequence[Row], decisions: Sequence[bool]) -> Outcome:
    """Tally ``decisions`` (covered or not, one per row) against the rows' question types."""
    counts = dict.fromkeys(Outcome.__dataclass_fields__, 0)
    for row, is_covered in zip(rows, decisions, strict=True):
        refused = not is_covered
        if row["type"] == "out_of_scope":
            counts["out_of_scope"] += 1
            counts["out_of_scope_refused"] += refused
            if row.get("near_topic"):
                counts["near_topic"] += 1
                counts["near_topic_refused"] += refused
        else:
            counts["answerable"] += 1
            counts["answerable_refused"] += refused
            if row["type"] == "named":
                counts["named"] += 1
                counts["named_refused"] += refused
    return Outcome(**counts)


def outcome_of(rows: Sequence[Row], model: CoverageModel) -> Outcome:
    return outcome(rows, [covered(r, model) for r in rows])


def per_type(rows: Sequence[Row], model: CoverageModel) -> dict[str, dict[str, int]]:
    """``type -> {"answered": n, "refused": n}`` (out_of_scope split into near and far)."""
    table: dict[str, dict[str, int]] = {}
    for row in rows:
        kind = row["type"]
        if kind == "out_of_scope":
            kind = "out_of_scope (near)" if row.get("near_topic") else "out_of_scope (far)"
        cell = table.setdefault(kind, {"answered": 0, "refused": 0})
        cell["answered" if covered(row, model) else "refused"] += 1
    return table


def rank_key(o: Outcome) -> tuple[float, float, float]:
    """Higher is better: balanced accuracy, then fewer answerable refused, then more near-topic refused."""
    return (round(o.balanced_accuracy, 6), -o.answerable_refused, o.near_topic_refused)


def fit_rules(rows: Sequence[Row], leave_out: str | None = None) -> tuple[CoverageModel, Outcome]:
    """The rule thresholds (from the grid) that do best on ``rows`` (dev), optionally without a signal.

    Ties go to the earliest in the grid: the lowest floor and the loosest lexical thresholds.
    """
    left = {leave_out} if leave_out else set()
    if "share" in left or "bm25" in left:
        left |= {"share", "bm25"}  # the lexical rule reads both
    floors = FLOORS if "dense" not in left else (1.0,)
    absents = MAX_ABSENT if "absent" not in left else (1.0,)
    shares = MIN_SHARE if "share" not in left else (1.01,)
    bm25s = MIN_BM25 if "bm25" not in left else (1.01,)
    base = CoverageModel(kind="rules", use_names=leave_out != "names")
    best: tuple[CoverageModel, Outcome] | None = None
    for floor, absent, share, bm25 in itertools.product(floors, absents, shares, bm25s):
        model = replace(base, relevance_floor=floor, max_absent=absent, min_share=share, min_bm25=bm25)
        result = outcome_of(rows, model)
        if best is None or rank_key(result) > rank_key(best[1]):
            best = (model, result)
    assert best is not None
    return best


PROBABILITIES = tuple(round(0.2 + 0.025 * i, 3) for i in range(25))  # 0.2 .. 0.8


def fit_logistic(
    rows: Sequence[Row], leave_out: str | None = None, l2: float = 0.01, steps: int = 3000, rate: float = 1.0
) -> tuple[CoverageModel, Outcome]:
    """A logistic regression over the signals (classes weighted equally; plain gradient descent
    on the log loss with a little L2, over standardised signals so that one on a small scale, such
    as ``dense_gap``, converges as fast as the others), then the probability threshold that does
    best on ``rows``. The weights are returned on the signals' own scale.

    Named questions are left out of the fit: the name rule decides them before the model does.
    """
    features = [f for f in FEATURES if f != leave_out]
    use_names = leave_out != "names"
    train = [r for r in rows if not (use_names and signals_of(r).named)]
    raw = [[getattr(signals_of(r), f) for f in features] for r in train]
    means = [sum(column) / len(column) for column in zip(*raw, strict=True)]
    scales = [
        math.sqrt(sum((v - m) ** 2 for v in column) / len(column)) or 1.0
        for column, m in zip(zip(*raw, strict=True), means, strict=True)
    ]
    xs = [[(v - m) / sd for v, m, sd in zip(x, means, scales, strict=True)] for x in raw]
    ys = [0.0 if r["type"] == "out_of_scope" else 1.0 for r in train]
    n_pos, n_neg = sum(ys), len(ys) - sum(ys)
    sample_w = [0.5 / n_pos if y else 0.5 / n_neg for y in ys]
    w = [0.0] * len(features)
    b = 0.0
    for _ in range(steps):
        grad_w = [0.0] * len(features)
        grad_b = 0.0
        for x, y, sw in zip(xs, ys, sample_w, strict=True):
            z = b + sum(wi * xi for wi, xi in zip(w, x, strict=True))
            p = 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))
            for i, xi in enumerate(x):
                grad_w[i] += sw * (p - y) * xi
            grad_b += sw * (p - y)
        w = [wi - rate * (gi + l2 * wi) for wi, gi in zip(w, grad_w, strict=True)]
        b -= rate * grad_b
    w = [wi / sd for wi, sd in zip(w, scales, strict=True)]  # back to the signals' own scale
    b -= sum(wi * m for wi, m in zip(w, means, strict=True))
    weights = tuple(round(w[features.index(f)], 3) if f in features else 0.0 for f in FEATURES)
    base = CoverageModel(kind="logistic", weights=weights, bias=round(b, 3), use_names=use_names)
    best: tuple[CoverageModel, Outcome] | None = None
    for threshold in PROBABILITIES:
        model = replace(base, min_probability=threshold)
        result = outcome_of(rows, model)
        if best is None or rank_key(result) > rank_key(best[1]):
            best = (model, result)
    assert best is not None
    return best


FITS = {"logistic": fit_logistic, "rules": fit_rules}


def cross_validate(rows: Sequence[Row], folds: int = 5) -> dict[str, Outcome]:
    """Each model kind fitted on 4/5 of ``rows`` and judged on the other fifth, in turn."""
    results: dict[str, Outcome] = {}
    for kind, fit in FITS.items():
        decisions: list[bool] = [False] * len(rows)
        for fold in range(folds):
            train = [rows[i] for i in range(len(rows)) if i % folds != fold]
            model, _ = fit(train)
            for i in range(fold, len(rows), folds):
                decisions[i] = covered(rows[i], model)
        results[kind] = outcome(rows, decisions)
    return results


def ablation(dev: Sequence[Row], test: Sequence[Row], kind: str = "logistic") -> list[dict[str, Any]]:
    """Each signal left out in turn: the model refitted on dev, then judged on dev and test."""
    out = []
    for leave_out in (None, *SIGNALS):
        model, on_dev = FITS[kind](dev, leave_out)
        out.append(
            {
                "left_out": leave_out or "(none)",
                "model": model,
                "dev": on_dev,
                "test": outcome_of(test, model) if test else None,
            }
        )
    return out


def settings_lines(model: CoverageModel) -> list[str]:
    """The environment variables (``.env`` lines) that set this model."""
    if model.kind == "logistic":
        values = {
            "PAPERQA_COVERAGE_MODEL": "logistic",
            **{
                f"PAPERQA_COVERAGE_WEIGHT_{f.upper()}": f"{w:g}"
                for f, w in zip(FEATURES, model.weights, strict=True)
            },
            "PAPERQA_COVERAGE_BIAS": f"{model.bias:g}",
            "PAPERQA_COVERAGE_MIN_PROBABILITY": f"{model.min_probability:g}",
        }
    else:
        values = {
            "PAPERQA_COVERAGE_MODEL": "rules",
            "PAPERQA_RELEVANCE_FLOOR": f"{model.relevance_floor:g}",
            "PAPERQA_COVERAGE_MAX_ABSENT": f"{model.max_absent:g}",
            "PAPERQA_COVERAGE_MIN_SHARE": f"{model.min_share:g}",
            "PAPERQA_COVERAGE_MIN_BM25": f"{model.min_bm25:g}",
        }
    return [f"{k}={v}" for k, v in values.items()]


def model_record(model: CoverageModel) -> dict[str, Any]:
    """A model as JSON (for run folders)."""
    from dataclasses import asdict

    return asdict(model)


def named_breakdown(rows: Sequence[Row], model: CoverageModel) -> dict[str, dict[str, int]]:
    """Named questions by phrasing and by how the name is written: asked, and refused."""
    table: dict[str, dict[str, int]] = {}
    for row in rows:
        if row["type"] != "named":
            continue
        refused = not covered(row, model)
        for key in (f"phrasing: {row.get('phrasing')}", f"written: {row.get('variant')}"):
            cell = table.setdefault(key, {"asked": 0, "refused": 0, "named first": 0})
            cell["asked"] += 1
            cell["refused"] += refused
            cell["named first"] += bool(row.get("metrics", {}).get("hit@1"))
    return table
