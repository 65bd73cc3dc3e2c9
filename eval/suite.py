"""``python -m eval report``: the dev comparison, the coverage model fitted on dev, the
recommendation, and the held-out test numbers of the shipped defaults, written to
``docs/evaluation.md`` and a run folder.

Plan (sequential; the local LLM is the expensive part, so it only answers for the shipped config):

1. dev: {bm25, dense, hybrid} x chunk sizes, retrieval + extractive answers (no LLM);
2. dev: condensing of follow-ups off / concat / llm, retrieval only;
3. rules (:meth:`Suite._reasons` states them in the report): mode and chunk size, condensing, the
   coverage model (answer or refuse: a logistic regression and a few rules fitted on the dev
   signals, the better by cross-validation), then top_k from a 3/5/8 sweep (extractive);
4. dev: the shipped config with the bundled local LLM;
5. test (held out, run once): the shipped config with the local LLM, every metric.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eval import tables as rp
from eval.config import Config, default_config
from eval.questions import Question
from eval.runner import Row, Runner, config_record, run_all

EXTRA = "dev-coverage"  # the set of more tuning questions for the coverage decision
# Follow-up tuning questions, run with the shipped config: dev-followups (the answer before each
# cites its paper as [1]), dev-followups2 (answers without markers, written after the first).
FOLLOWUPS = ("dev-followups", "dev-followups2")
TIE = 0.01  # smallest margin ever required to move away from a shipped value
CONDENSE_COST = {"off": 0, "concat": 1, "llm": 2}  # cheaper first on ties


@dataclass
class Recommendation:
    config: Config
    reasons: list[str]


def pick(
    candidates: Sequence[tuple[Any, float | None]],
    preferred: Any,
    tie: float = TIE,
    distance: Callable[[Any, Any], float] | None = None,
) -> Any:
    """The smallest change from ``preferred`` (the shipped value) that scores within ``tie`` of the best.

    Candidates within ``tie`` of the best score are all "as good" (a lead that one question could
    make is no evidence). Among them: ``preferred`` if it is there, else the one closest to it by
    ``distance`` (default: all equally close), then the higher score.
    """
    scored = [(key, score) for key, score in candidates if score is not None]
    if not scored:
        return preferred
    best = max(score for _, score in scored)
    near = [(key, score) for key, score in scored if best - score <= tie + 1e-12]
    if any(key == preferred for key, _ in near):
        return preferred
    measure = distance or (lambda a, b: 0.0)
    return min(near, key=lambda kv: (measure(kv[0], preferred), -kv[1]))[0]


def changed_fields(a: tuple, b: tuple) -> int:
    """How many settings differ between two tuples of setting values."""
    return sum(x != y for x, y in zip(a, b, strict=True))


def load_average() -> float | None:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # pragma: no cover - not on every platform
        return None


class Suite:
    def __init__(
        self,
        runner: Runner,
        dev: Sequence[Question],
        test: Sequence[Question],
        chunk_sizes: Sequence[int],
        sink,
        local_backend: str = "local",
        coverage_extra: Sequence[Question] = (),
        answers_extra: Sequence[Question] = (),
        followups_extra: Mapping[str, Sequence[Question]] | None = None,
    ) -> None:
        self.runner = runner
        self.dev, self.test = list(dev), list(test)
        # More tuning questions for the evidence settings (eval/questions/dev-answers.jsonl and
        # dev-details.jsonl).
        self.answers_extra = list(answers_extra)
        # Follow-up tuning questions (FOLLOWUPS, by set name): the shipped config's figures.
        self.followups_extra = {name: list(qs) for name, qs in (followups_extra or {}).items() if qs}
        # More tuning questions for the coverage decision only (eval/questions/dev-coverage.jsonl):
        # the model is fitted on dev and these, never on test.
        self.coverage_extra = list(coverage_extra)
        self.sink = sink
        self.default = default_config()
        # The shipped chunk size is always compared: the rules need it as the reference.
        self.chunk_sizes = sorted({*chunk_sizes, self.default.chunk_size})
        self.local_backend = local_backend
        self.rows: dict[tuple[str, str], list[Row]] = {}
        self.configs: dict[str, Config] = {}
        self.loads: list[float] = []
        self.timing: dict[str, float] = {}
        self.earlier_timing: dict[str, float] = {}  # of the run folder resumed, if any
        self.ran = 0  # configs run in this pass
        self.dense_recall: dict[str, Any] = {}

    async def _run(self, configs: Sequence[Config], questions: Sequence[Question], set_name: str) -> None:
        todo = list({c.name: c for c in configs if (set_name, c.name) not in self.rows}.values())
        self.ran += len(todo)
        for config in todo:
            self.configs[config.name] = config
        results = await run_all(self.runner, todo, questions, set_name, self._sink)
        for name, rows in results.items():
            self.rows[(set_name, name)] = rows

    def total_timing(self) -> dict[str, float]:
        """This pass's timings, plus those of the passes before it when resumed."""
        if not self.earlier_timing:
            return {**self.timing, "passes": 1}
        if not self.ran:  # only re-rendered: nothing was run in this pass
            return dict(self.earlier_timing)
        return {
            "total": self.earlier_timing.get("total", 0.0) + self.timing.get("total", 0.0),
            "passes": self.earlier_timing.get("passes", 1) + 1,
            "last_pass": self.timing.get("total", 0.0),
        }

    def _sink(self, row: Row) -> None:
        load = load_average()  # sampled at every question: the LLM runs are long
        if load is not None:
            self.loads.append(load)
            row["load1"] = round(load, 2)
        if self.sink is not None:
            self.sink(row)

    def preload(self, rows: Sequence[Row]) -> None:
        """Rows of an earlier (interrupted or older) run: configs complete there are not run again.

        The last row per (set, config, question) wins; a config missing questions is run again.
        """
        from eval.config import parse_config

        expected = {"dev": {q.id for q in self.dev}, "test": {q.id for q in self.test}}
        latest: dict[tuple[str, str], dict[str, Row]] = {}
        for row in rows:
            if row["id"] in expected.get(row["set"], set()):
                latest.setdefault((row["set"], row["config"]), {})[row["id"]] = row
        for (set_name, name), by_id in latest.items():
            if set(by_id) != expected[set_name]:
                continue
            order = [q.id for q in (self.dev if set_name == "dev" else self.test)]
            self.rows[(set_name, name)] = [by_id[i] for i in order]
            self.configs[name] = parse_config(name)
            self.loads.extend(float(r["load1"]) for r in by_id.values() if r.get("load1") is not None)

    def summary(self, set_name: str, config: Config) -> dict[str, Any]:
        rows = self.rows[(set_name, config.name)]
        return rp.summarize_config(rows, config_record(config))

    # --- the plan ------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        d = self.default
        started = time.perf_counter()
        ex = d.with_(llm_backend="extractive")
        # 1. {modes} x {chunk sizes}: retrieval and extractive answers (no LLM) in one pass each.
        grid = [
            ex.with_(retrieval_mode=mode, chunk_size=c)
            for c in self.chunk_sizes
            for mode in ("bm25", "dense", "hybrid")
        ]
        # 2. Condensing of follow-ups, retrieval only; cond-llm rewrites with the service's LLM.
        condense = [
            d.with_(
                condense_mode=c,
                answers=False,
                llm_backend=self.local_backend if c == "llm" else "extractive",
                label=f"{d.retrieval_mode}:c{d.chunk_size}:cond-{c}",
            )
            for c in ("off", "concat", "llm")
        ]
        # The other embedding path (fp32 torch vs the shipped int8 ONNX), retrieval only: how much
        # the numbers move between the two on this machine, i.e. what a CPU difference can mean.
        other = "torch" if d.embed_backend != "torch" else "onnx-int8"
        embed_paths = [
            d.with_(retrieval_mode=mode, answers=False, embed_backend=backend)
            for backend in (d.embed_backend, other)
            for mode in ("bm25", "dense", "hybrid")
        ]
        await self._run(grid, self.dev, "dev")
        await self._run(condense, self.dev, "dev")
        await self._run(embed_paths, self.dev, "dev")
        self.dense_recall = dense_recall(self.runner, d, [*self.dev, *self.test])
        self.timing["dev grid"] = time.perf_counter() - started

        # 3. Rules, in order: mode + chunk size, condensing, coverage, then top_k (needs a k sweep).
        mode, chunk = pick(
            [((c.retrieval_mode, c.chunk_size), self.score(c)[0]) for c in grid],
            (d.retrieval_mode, d.chunk_size),
            tie=self.margin(grid[0]),
            distance=changed_fields,
        )
        cond = self._pick_condense(condense)
        chosen = ex.with_(retrieval_mode=mode, chunk_size=chunk, condense_mode=cond)
        if self.coverage_extra:
            await self._run([chosen.with_(answers=False)], self.coverage_extra, EXTRA)
        coverage = self.fit_coverage(chosen)
        rec_k = {k: chosen.with_(top_k=k) for k in (3, 5, 8)}
        t = time.perf_counter()
        await self._run(list(rec_k.values()), self.dev, "dev")
        top_k = pick(
            [(k, self.score(c, k)[0]) for k, c in rec_k.items()],
            d.top_k,
            tie=self.margin(rec_k.get(d.top_k, chosen)),
            distance=lambda a, b: abs(a - b),
        )
        recommended = chosen.with_(top_k=top_k, llm_backend=d.llm_backend)

        # 3b. The evidence and paper-selection settings, swept over every tuning question (no test).
        t = time.perf_counter()
        evidence_sweep = await self.sweep_evidence(d)
        self.timing["evidence sweep"] = time.perf_counter() - t

        # 4. The shipped config with the answering LLM, on dev, then once on the held-out test set.
        local_default = d.with_(llm_backend=self.local_backend, label="default (shipped)")
        await self._run([local_default], self.dev, "dev")
        for name, questions in self.followups_extra.items():
            await self._run(followup_configs(local_default), questions, name)
        self.timing["dev answers"] = time.perf_counter() - t
        t = time.perf_counter()
        await self._run([local_default], self.test, "test")
        self.timing["test"] = time.perf_counter() - t

        # 5. The answer strategies with the answering model, side by side on dev and test: the
        #    shipped default runs as one of them; the choice is made on dev only.
        from app.answering.strategies import STRATEGIES, resolve_strategy

        t = time.perf_counter()
        shipped_strategy = resolve_strategy(local_default.settings(self.runner.base), self.local_backend)
        strategy_configs = {shipped_strategy: local_default}
        for name in STRATEGIES:
            if name != shipped_strategy:
                strategy_configs[name] = local_default.with_(answer_strategy=name, label=f"strategy {name}")
        others = [c for name, c in strategy_configs.items() if name != shipped_strategy]
        await self._run(others, self.dev, "dev")
        await self._run(others, self.test, "test")
        self.timing["strategies"] = time.perf_counter() - t
        from eval import claims as cl

        claims = cl.evaluate(self.runner, d) if cl.LABELLED.is_file() else None
        self.timing["total"] = time.perf_counter() - started

        answer_configs = list({c.name: c for c in [*grid, *rec_k.values()]}.values())
        coverage["held_out"] = self.coverage_held_out(local_default)
        reasons = self._reasons(grid, condense, coverage, rec_k, recommended, local_default)
        return {
            "grid": grid,
            "condense": condense,
            "answer_configs": answer_configs,
            "embed_paths": embed_paths,
            "local_default": local_default,
            "coverage": coverage,
            "recommended": Recommendation(recommended, reasons),
            "rec_k": rec_k,
            "claims": claims,
            "evidence": evidence_sweep,
            "strategies": {
                "configs": strategy_configs,
                "shipped": shipped_strategy,
                "picked": self.pick_strategy(strategy_configs),
            },
        }

    async def sweep_evidence(self, config: Config) -> dict[str, Any]:
        """``python -m eval evidence`` over dev and the tuning extras: the shipped setting's
        figures and the best settings of the grid."""
        from eval import evidence as ev

        questions = [*self.dev, *self.coverage_extra, *self.answers_extra]
        services = self.runner.services(config)
        return await asyncio.to_thread(
            ev.sweep_summary, services, questions, config.settings(self.runner.base)
        )

    # --- rules ---------------------------------------------------------------------------------
    def score(self, config: Config, k: int | None = None) -> tuple[float | None, float | None, float | None]:
        """(score, retrieval part, facts part) of an extractive answer config on dev.

        Retrieval part: nDCG@10 (or recall@k when ``k`` is given) over the answerable questions.
        Facts part: the share of key facts present in the sources handed to the answerer, which
        is what chunking, top_k and the context budget decide. Score: the mean of the two.
        """
        summary = self.summary("dev", config)
        ranking = rp.value(summary, "retrieval", f"recall@{k}" if k else "ndcg@10")
        facts = rp.value(summary, "answers", "context_key_facts")
        score = None if ranking is None or facts is None else (ranking + facts) / 2
        return score, ranking, facts

    def margin(self, config: Config) -> float:
        """What one question can move :meth:`score` by: a smaller lead is not evidence.

        A question moves a mean over n questions by at most 1/n; the score averages two means.
        """
        summary = self.summary("dev", config)
        n_ranked = summary["retrieval"]["answerable"]["ndcg@10"]["n"]
        n_facts = summary.get("answers", {}).get("all", {}).get("context_key_facts", {}).get("n", 0)
        if not n_ranked or not n_facts:
            return TIE
        return max(TIE, (1 / n_ranked + 1 / n_facts) / 2)

    def wins(self, a: Config, b: Config, metric: str, set_name: str = "dev") -> tuple[int, int]:
        """Questions where ``a`` scores higher than ``b`` on ``metric``, and lower."""
        left = {r["id"]: r["metrics"].get(metric) for r in self.rows[(set_name, a.name)]}
        right = {r["id"]: r["metrics"].get(metric) for r in self.rows[(set_name, b.name)]}
        pairs = [(left[i], right[i]) for i in left if left[i] is not None and right.get(i) is not None]
        return sum(x > y + 1e-9 for x, y in pairs), sum(x < y - 1e-9 for x, y in pairs)

    def _pick_condense(self, condense: Sequence[Config]) -> str:
        scored = [
            (c.condense_mode, rp.value(self.summary("dev", c), "retrieval", "ndcg@10", "followup"))
            for c in condense
        ]
        known = [(mode, s) for mode, s in scored if s is not None]
        if not known:  # no follow-up question in the set
            return self.default.condense_mode
        best = max(s for _, s in known)
        near = [mode for mode, s in known if best - s <= self.condense_margin(condense[0])]
        if self.default.condense_mode in near:
            return self.default.condense_mode
        return min(near, key=lambda mode: CONDENSE_COST[mode])

    def condense_margin(self, config: Config) -> float:
        """One follow-up question's worth of the follow-up nDCG@10 mean."""
        n = self.summary("dev", config)["retrieval"].get("followup", {}).get("ndcg@10", {}).get("n", 0)
        return max(TIE, 1 / n) if n else TIE

    def strategy_score(self, config: Config, set_name: str = "dev") -> dict[str, float | None]:
        """The faithfulness figures of an answer config: gold paper cited on one-paper questions,
        citation precision, citation recall on "which papers" questions, key facts on detail ones."""
        summary = self.summary(set_name, config)
        parts = {
            "single_gold_cited": rp.value(summary, "answers", "single_gold_cited"),
            "citation_precision": rp.value(summary, "answers", "citation_precision"),
            "multi_recall": rp.value(summary, "answers", "citation_recall", "multi"),
            "detail_facts": rp.value(summary, "answers", "key_fact_match", "detail"),
        }
        known = [v for v in parts.values() if v is not None]
        parts["score"] = sum(known) / len(known) if known else None
        return parts

    def pick_strategy(self, configs: dict[str, Config]) -> str:
        """On dev: the best mean of the four figures; within one question's worth of it, the
        cheapest (extract < compose < generate: no model, short calls, one long call)."""
        cost = {"extract": 0, "compose": 1, "generate": 2}
        scored = {name: self.strategy_score(c)["score"] for name, c in configs.items()}
        known = {k: v for k, v in scored.items() if v is not None}
        if not known:
            return next(iter(configs))
        best = max(known.values())
        some = next(iter(configs.values()))
        n = self.summary("dev", some)["answers"]["all"].get("single_gold_cited", {}).get("n") or 1
        near = [k for k, v in known.items() if best - v <= 1 / (4 * n) + 1e-9]
        return min(near, key=lambda k: cost.get(k, 9))

    def _rows_like(self, config: Config, set_name: str = "dev") -> list[Row]:
        """Rows of a run with the config's chunking and condensing (the coverage signals depend on
        those and on the queries only, not on the mode of the ranking or the answer backend)."""
        return next(
            rows
            for (s, name), rows in self.rows.items()
            if s == set_name
            and self.configs[name].chunk_size == config.chunk_size
            and self.configs[name].chunk_overlap == config.chunk_overlap
            and self.configs[name].condense_mode == config.condense_mode
            and self.configs[name].retrieval_mode == config.retrieval_mode
        )

    def _extra_like(self, config: Config) -> list[Row]:
        """The coverage tuning questions' rows for ``config``'s chunking and condensing (none when
        the set is not used)."""
        return self._rows_like(config, EXTRA) if self.coverage_extra else []

    def fit_coverage(self, config: Config) -> dict[str, Any]:
        """Fit both coverage model kinds on the dev signals (dev and dev-coverage); the kind with the better 5-fold
        cross-validated balanced accuracy is the one recommended, if it beats the shipped model on
        dev by more than one question's worth."""
        from app.retrieval.coverage import CoverageModel
        from eval import coverage as cv

        extra = self._extra_like(config)
        rows = self._rows_like(config) + extra
        shipped = CoverageModel.from_settings(config.settings(self.runner.base))
        folds = cv.cross_validate(rows)
        kind = max(folds, key=lambda k: cv.rank_key(folds[k]))
        fitted = {k: fit(rows) for k, fit in cv.FITS.items()}
        shipped_outcome = cv.outcome_of(rows, shipped)
        model, outcome = fitted[kind]
        answerable = max(shipped_outcome.answerable, 1)
        margin = 1 / (2 * answerable)  # one answerable question's worth of balanced accuracy
        better = outcome.balanced_accuracy - shipped_outcome.balanced_accuracy > margin + 1e-9
        return {
            "chunk_size": config.chunk_size,
            "condense_mode": config.condense_mode,
            "extra": bool(extra),
            "cross_validated": folds,
            "fitted": fitted,
            "kind": kind,
            "shipped": (shipped, shipped_outcome),
            "recommended": model if better else shipped,
            "margin": margin,
        }

    def coverage_held_out(self, local_default: Config) -> dict[str, Any]:
        """The shipped model on the dev and test runs of the shipped config, per question type, and
        each signal left out in turn (refitted on dev, judged on test)."""
        from app.retrieval.coverage import CoverageModel
        from eval import coverage as cv

        shipped = CoverageModel.from_settings(local_default.settings(self.runner.base))
        dev = self.rows[("dev", local_default.name)]
        test = self.rows[("test", local_default.name)]
        extra = self._extra_like(local_default)
        return {
            "model": shipped,
            "extra": cv.outcome_of(extra, shipped) if extra else None,
            "dev": cv.outcome_of(dev, shipped),
            "test": cv.outcome_of(test, shipped),
            "dev_types": cv.per_type(dev, shipped),
            "test_types": cv.per_type(test, shipped),
            "named_dev": cv.named_breakdown(dev, shipped),
            "named_test": cv.named_breakdown(test, shipped),
            "ablation": cv.ablation(dev + extra, test, shipped.kind),
        }

    def _reasons(self, grid, condense, coverage, rec_k, rec: Config, local_default: Config) -> list[str]:
        d = self.default
        f = rp.fmt
        by_key = {(c.retrieval_mode, c.chunk_size): c for c in grid}
        chosen, dflt = by_key[(rec.retrieval_mode, rec.chunk_size)], by_key[(d.retrieval_mode, d.chunk_size)]
        best = max(grid, key=lambda c: self.score(c)[0] or -1)

        def describe(c: Config) -> str:
            score, ranking, facts = self.score(c)
            return (
                f"`{c.retrieval_mode}` c{c.chunk_size}: nDCG@10 {f(ranking)}, key facts in sources "
                f"{f(facts)} → {f(score)}"
            )

        versus = ""
        other = chosen if chosen.name != dflt.name else best
        if other.name != dflt.name:
            up, down = self.wins(other, dflt, "ndcg@10")
            fup, fdown = self.wins(other, dflt, "context_key_facts")
            versus = (
                f" Per dev question, `{other.retrieval_mode}` c{other.chunk_size} against the shipped "
                f"one: nDCG@10 better on {up}, worse on {down}; key facts in sources better on "
                f"{fup}, worse on {fdown}."
            )
        tie = self.margin(dflt)
        reasons = [
            f"**Retrieval mode `{rec.retrieval_mode}`, chunk size {rec.chunk_size}**: rule = highest "
            f"mean of nDCG@10 (answerable dev questions) and the share of key facts present in the "
            f"sources given to the answerer (top_k {d.top_k}, {self.runner.base.context_token_budget}-"
            f"token context budget). Scores within one question's worth ({f(tie)}) of the best count "
            f"as equally good; among those, the shipped value if it is one, else the one changing "
            f"fewest settings. "
            f"Best {describe(best)}; shipped {describe(dflt)}"
            + ("" if chosen.name in (best.name, dflt.name) else f"; chosen {describe(chosen)}")
            + f".{versus}"
        ]
        cs = {
            c.condense_mode: rp.value(self.summary("dev", c), "retrieval", "ndcg@10", "followup")
            for c in condense
        }
        reasons.append(
            f"**Condense mode `{rec.condense_mode}`**: rule = highest nDCG@10 on the follow-up questions; "
            f"within one question's worth ({f(self.condense_margin(condense[0]))}) of the best, the "
            f"shipped value, else the cheaper mode (off < concat < llm): "
            + ", ".join(f"{k} {f(v)}" for k, v in cs.items())
            + f" (n = {self.summary('dev', condense[0])['types'].get('followup', 0)} follow-ups)."
        )
        ks = {k: self.score(c, k) for k, c in rec_k.items()}
        reasons.append(
            f"**top_k {rec.top_k}**: rule = highest mean of recall@k (answerable) and key facts in the "
            f"sources at that k (the context budget is split over k sources, so more sources means "
            f"shorter passages); among the k within one question's worth "
            f"({f(self.margin(rec_k.get(d.top_k, next(iter(rec_k.values())))))}) of the best, the "
            f"shipped k if it is one, else the closest to it. "
            + "; ".join(
                f"k={k}: recall@{k} {f(r)}, key facts in sources {f(x)} → {f(sc)}"
                for k, (sc, r, x) in ks.items()
            )
            + "."
        )
        reasons.append(coverage_reason(coverage))
        local = self.summary("dev", local_default)
        extractive = self.summary("dev", dflt)
        if local_default.llm_backend != "extractive" and "answers" in local:
            lat = lambda s: rp.fmt_ms(s["latency_ms"].get("total_ms", {}).get("p50"))  # noqa: E731
            reasons.append(
                f"**Answer backend (observation, not a setting change)**: on the shipped config, the "
                f"`{local_default.llm_backend}` LLM vs the extractive answer: key-fact match on detail "
                f"questions {f(rp.value(local, 'answers', 'key_fact_match', 'detail'))} vs "
                f"{f(rp.value(extractive, 'answers', 'key_fact_match', 'detail'))}, citation precision "
                f"{f(rp.value(local, 'answers', 'citation_precision'))} vs "
                f"{f(rp.value(extractive, 'answers', 'citation_precision'))}, citation recall "
                f"{f(rp.value(local, 'answers', 'citation_recall'))} vs "
                f"{f(rp.value(extractive, 'answers', 'citation_recall'))}, answer latency p50 "
                f"{lat(local)} vs {lat(extractive)}. The facts are in the sources "
                f"({f(rp.value(extractive, 'answers', 'context_key_facts'))} of them); the answering "
                f"model is what loses them."
            )
        return reasons


FOLLOWUP_ANSWER_WEIGHTS = (0.0, 0.5, 1.0)  # PAPERQA_FOLLOWUP_ANSWER_WEIGHT, compared on FOLLOWUPS


def followup_configs(shipped: Config) -> list[Config]:
    """The shipped config, then the same with each other weight of a follow-up joined to the
    answer before it (only follow-ups have one: the other sets would not move)."""
    others = [
        shipped.with_(answer_weight=w, label=f"answer weight {w:g}")
        for w in FOLLOWUP_ANSWER_WEIGHTS
        if abs(w - shipped.answer_weight) > 1e-9
    ]
    return [shipped, *others]


FOLLOWUP_FIGURES = ("single_gold_cited", "citation_precision", "citation_recall", "key_fact_match")


def followup_score(summaries: Sequence[Mapping[str, Any]]) -> float | None:
    """A config's figure on the follow-up sets: per set, the mean of gold cited on one-paper
    questions, citation precision, citation recall and key facts; then the mean over the sets."""
    per_set = []
    for summary in summaries:
        values = [v for f in FOLLOWUP_FIGURES if (v := rp.value(summary, "answers", f)) is not None]
        if values:
            per_set.append(sum(values) / len(values))
    return sum(per_set) / len(per_set) if per_set else None


def dense_recall(
    runner: Runner, config: Config, questions: Sequence[Question], depth: int = 10
) -> dict[str, Any]:
    """How close Chroma's HNSW search is to an exact one: the share of each question's exact top
    ``depth`` chunks (brute force over every stored vector) found among the chunks the dense side
    fetches (``candidate_k``), over the raw questions. Reads vectors only; no metric depends on it.
    """
    import numpy as np

    services = runner.services(config)
    settings = config.settings(runner.base)
    stored = services.chunks.get(include=["embeddings"])
    ids, vectors = np.array(stored["ids"]), np.array(stored["embeddings"])
    embed = runner.embed_model_for(config.embed_backend)
    queries = [embed.get_query_embedding(q.question) for q in questions]
    found = services.chunks.query(query_embeddings=queries, n_results=settings.candidate_k, include=[])["ids"]
    shares, first = [], 0
    for query, hnsw in zip(queries, found, strict=True):
        exact = ids[np.argsort(-(vectors @ np.asarray(query)))[:depth]]
        shares.append(len(set(exact) & set(hnsw)) / len(exact))
        first += exact[0] in hnsw
    return {
        "questions": len(queries),
        "depth": depth,
        "candidates": settings.candidate_k,
        "recall": sum(shares) / len(shares) if shares else None,
        "nearest_found": first,
        "ef_search": settings.hnsw_ef_search,
        "chunks": len(ids),
    }


def machine_note() -> str:
    """Where the numbers come from: int8 embeddings differ slightly between CPUs (VNNI or not)."""
    from bench.common import describe_machine, machine

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{describe_machine(machine())}"
    )


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def coverage_reason(coverage: dict[str, Any]) -> str:
    """The coverage rule and its outcome, as one bullet of the recommendations."""
    from eval import coverage as cv

    f = rp.fmt
    folds = coverage["cross_validated"]
    shipped, shipped_outcome = coverage["shipped"]
    model, outcome = coverage["fitted"][coverage["kind"]]
    same = coverage["recommended"] == shipped
    tuned = "dev + dev-coverage" if coverage.get("extra") else "dev"

    def o(x: Any) -> str:
        return (
            f"balanced accuracy {f(x.balanced_accuracy)}, answerable refused {x.answerable_refused}/"
            f"{x.answerable}, out-of-scope refused {x.out_of_scope_refused}/{x.out_of_scope}"
        )

    return (
        f"**Coverage model `{coverage['recommended'].kind}`**: rule = of a logistic regression and a few "
        "threshold rules over the coverage signals, the kind with the better 5-fold cross-validated "
        f"balanced accuracy on {tuned} ("
        + "; ".join(f"{k}: {o(v)}" for k, v in folds.items())
        + f"), fitted on all of {tuned} ({o(outcome)}); it replaces the shipped model only if it beats it "
        f"there by more than one question's worth ({f(coverage['margin'])}); shipped: {o(shipped_outcome)}. "
        + ("The shipped model stays." if same else "**Change**: " + " ".join(cv.settings_lines(model)) + ".")
    )
