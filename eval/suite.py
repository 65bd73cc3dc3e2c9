"""``python -m eval report``: the dev comparison, the calibrated floor, the recommendation, and the
held-out test numbers of the shipped defaults, written to ``docs/evaluation.md`` and a run folder.

Plan (sequential; the local LLM is the expensive part, so it only answers for the default config):

1. dev, retrieval only: {bm25, dense, hybrid} x chunk sizes, plus condense off/llm (follow-ups);
2. dev, relevance floor calibrated on the top similarity of answerable vs out-of-scope questions;
3. recommendation by fixed rules (below) from the dev numbers;
4. dev, answers: extractive for the modes, chunk sizes, top_k 3/5/8, the calibrated floor and the
   recommended config; the bundled local LLM for the default config only;
5. test (held out, run once): the default config with the local LLM, every metric.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from eval import metrics as m
from eval import report as rp
from eval.config import Config, default_config
from eval.questions import Question
from eval.runner import Row, Runner, config_record, run_all

TIE = 0.01  # differences below this (on ~47 answerable dev questions) are noise: keep the default
CONDENSE_COST = {"off": 0, "concat": 1, "llm": 2}  # cheaper first on ties


@dataclass
class Recommendation:
    config: Config
    reasons: list[str]


def pick(candidates: Sequence[tuple[Any, float | None]], preferred: Any, tie: float = TIE) -> Any:
    """The best-scoring key; ``preferred`` (the current default) wins if within ``tie`` of the best."""
    scored = [(key, score) for key, score in candidates if score is not None]
    if not scored:
        return preferred
    best_key, best = max(scored, key=lambda kv: kv[1])
    for key, score in scored:
        if key == preferred and best - score < tie:
            return preferred
    return best_key


def load_average() -> float | None:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # pragma: no cover - not on every platform
        return None


class Suite:
    def __init__(self, runner: Runner, dev: Sequence[Question], test: Sequence[Question],
                 chunk_sizes: Sequence[int], sink, local_backend: str = "local") -> None:
        self.runner = runner
        self.dev, self.test = list(dev), list(test)
        self.chunk_sizes = list(dict.fromkeys(chunk_sizes))
        self.sink = sink
        self.default = default_config()
        self.local_backend = local_backend
        self.rows: dict[tuple[str, str], list[Row]] = {}
        self.configs: dict[str, Config] = {}
        self.loads: list[float] = []
        self.timing: dict[str, float] = {}

    async def _run(self, configs: Sequence[Config], questions: Sequence[Question], set_name: str) -> None:
        todo = [c for c in configs if (set_name, c.name) not in self.rows]
        for config in todo:
            self.configs[config.name] = config
        results = await run_all(self.runner, todo, questions, set_name, self._sink)
        for name, rows in results.items():
            self.rows[(set_name, name)] = rows
        self._note_load()

    def _sink(self, row: Row) -> None:
        self._note_load()  # sampled at every question: the LLM runs are long
        if self.sink is not None:
            self.sink(row)

    def _note_load(self) -> None:
        load = load_average()
        if load is not None:
            self.loads.append(load)

    def summary(self, set_name: str, config: Config) -> dict[str, Any]:
        rows = self.rows[(set_name, config.name)]
        return rp.summarize_config(rows, config_record(config))

    # --- the plan ------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        d = self.default
        started = time.perf_counter()
        self._note_load()
        # 1. retrieval grid and condensing (retrieval only).
        grid = [d.with_(retrieval_mode=mode, chunk_size=c, answers=False, llm_backend="extractive")
                for c in self.chunk_sizes for mode in ("bm25", "dense", "hybrid")]
        condense = [d.with_(condense_mode=c, answers=False, llm_backend="extractive")
                    for c in ("off", "concat", "llm")]
        # cond-llm needs an LLM to rewrite: use the same one the service would.
        condense = [c.with_(llm_backend=self.local_backend) if c.condense_mode == "llm" else c
                    for c in condense]
        await self._run(grid, self.dev, "dev")
        await self._run(condense, self.dev, "dev")
        self.timing["dev retrieval"] = time.perf_counter() - started

        # 2 + 3. recommendation: mode and chunk size, condensing, floor (top_k after answers).
        mode_chunk = pick(
            [((c.retrieval_mode, c.chunk_size), rp.value(self.summary("dev", c), "retrieval", "ndcg@10"))
             for c in grid],
            (d.retrieval_mode, d.chunk_size),
        )
        cond = self._pick_condense(condense)
        base_rec = d.with_(retrieval_mode=mode_chunk[0], chunk_size=mode_chunk[1], condense_mode=cond)
        calibration = self.calibrate(base_rec)
        floor = self._pick_floor(calibration)

        # 4. answers on dev.
        t = time.perf_counter()
        ex = d.with_(llm_backend="extractive")
        answer_configs = [ex.with_(retrieval_mode=mode) for mode in ("bm25", "dense", "hybrid")]
        answer_configs += [ex.with_(chunk_size=c) for c in self.chunk_sizes if c != d.chunk_size]
        answer_configs += [ex.with_(top_k=k) for k in (3, 5, 8) if k != d.top_k]
        answer_configs += [ex.with_(relevance_floor=calibration["floor"])]
        rec_ex = base_rec.with_(relevance_floor=floor, llm_backend="extractive")
        rec_k = {k: rec_ex.with_(top_k=k) for k in (3, 5, 8)}
        answer_configs += list(rec_k.values())
        answer_configs = list({c.name: c for c in answer_configs}.values())
        await self._run(answer_configs, self.dev, "dev")
        rec_retrieval = base_rec.with_(
            answers=False,
            llm_backend=self.local_backend if base_rec.condense_mode == "llm" else "extractive",
        )
        await self._run([rec_retrieval], self.dev, "dev")
        top_k = self._pick_top_k(rec_retrieval, rec_k)
        recommended = rec_ex.with_(top_k=top_k, llm_backend=d.llm_backend)
        local_default = d.with_(llm_backend=self.local_backend, label="default (shipped)")
        await self._run([local_default], self.dev, "dev")
        self.timing["dev answers"] = time.perf_counter() - t

        # 5. held-out test: the shipped defaults, once.
        t = time.perf_counter()
        await self._run([local_default], self.test, "test")
        self.timing["test"] = time.perf_counter() - t
        self.timing["total"] = time.perf_counter() - started

        reasons = self._reasons(grid, condense, calibration, rec_retrieval, rec_k, recommended)
        return {
            "grid": grid, "condense": condense, "answer_configs": answer_configs,
            "local_default": local_default, "calibration": calibration,
            "recommended": Recommendation(recommended, reasons), "rec_k": rec_k,
            "rec_retrieval": rec_retrieval,
        }

    # --- rules ---------------------------------------------------------------------------------
    def _pick_condense(self, condense: Sequence[Config]) -> str:
        scored = [(c.condense_mode, rp.value(self.summary("dev", c), "retrieval", "ndcg@10", "followup"))
                  for c in condense]
        known = [(mode, s) for mode, s in scored if s is not None]
        if not known:  # no follow-up question in the set
            return self.default.condense_mode
        best = max(s for _, s in known)
        near = [mode for mode, s in known if best - s < TIE]
        if self.default.condense_mode in near:
            return self.default.condense_mode
        return min(near, key=lambda mode: CONDENSE_COST[mode])

    def calibrate(self, config: Config) -> dict[str, Any]:
        """Floor from the top similarity of answerable vs out-of-scope dev questions."""
        rows = self.rows.get(("dev", config.name)) or next(
            rows for (s, name), rows in self.rows.items()
            if s == "dev" and self.configs[name].chunk_size == config.chunk_size
            and self.configs[name].condense_mode == config.condense_mode
        )
        answerable = [r["top_similarity"] for r in rows if r["type"] != "out_of_scope"]
        oos = [r["top_similarity"] for r in rows if r["type"] == "out_of_scope"]
        best = m.calibrate_floor(answerable, oos)
        current = m.floor_outcome(answerable, oos, self.default.relevance_floor)
        return {
            **best,
            "chunk_size": config.chunk_size,
            "condense_mode": config.condense_mode,
            "current": current,
            "answerable": sorted(answerable),
            "out_of_scope": sorted(oos),
        }

    def _pick_floor(self, calibration: dict[str, Any]) -> float:
        current = calibration["current"]
        better = (calibration["accuracy"], -calibration["false_refusals"]) > (
            current["accuracy"], -current["false_refusals"])
        return calibration["floor"] if better else self.default.relevance_floor

    def _k_score(self, retrieval: Config, k: int, answers: Config) -> tuple[float | None, float | None, float | None]:
        r = rp.value(self.summary("dev", retrieval), "retrieval", f"recall@{k}")
        facts = rp.value(self.summary("dev", answers), "answers", "key_fact_match", "detail")
        score = None if r is None or facts is None else (r + facts) / 2
        return score, r, facts

    def _pick_top_k(self, retrieval: Config, rec_k: dict[int, Config]) -> int:
        return pick([(k, self._k_score(retrieval, k, c)[0]) for k, c in rec_k.items()], self.default.top_k)

    def _reasons(self, grid, condense, calibration, rec_retrieval, rec_k, rec: Config) -> list[str]:
        d = self.default
        s = {c.name: self.summary("dev", c) for c in grid}
        best = max(grid, key=lambda c: rp.value(s[c.name], "retrieval", "ndcg@10") or -1)
        chosen = next(c for c in grid if (c.retrieval_mode, c.chunk_size) == (rec.retrieval_mode, rec.chunk_size))
        dflt = next(c for c in grid if (c.retrieval_mode, c.chunk_size) == (d.retrieval_mode, d.chunk_size))
        nd = lambda c: rp.fmt(rp.value(s[c.name], "retrieval", "ndcg@10"))  # noqa: E731
        mrr = lambda c: rp.fmt(rp.value(s[c.name], "retrieval", "mrr@10"))  # noqa: E731
        reasons = [
            f"**Retrieval mode `{rec.retrieval_mode}`, chunk size {rec.chunk_size}**: rule = highest dev "
            f"nDCG@10 over the answerable questions, keeping the shipped value unless another is better "
            f"by {TIE} or more. Best: `{best.retrieval_mode}` c{best.chunk_size} nDCG@10 {nd(best)} "
            f"(MRR@10 {mrr(best)}); shipped `{d.retrieval_mode}` c{d.chunk_size}: nDCG@10 {nd(dflt)} "
            f"(MRR@10 {mrr(dflt)}); chosen: nDCG@10 {nd(chosen)}.",
        ]
        cs = {c.condense_mode: rp.value(self.summary("dev", c), "retrieval", "ndcg@10", "followup") for c in condense}
        reasons.append(
            f"**Condense mode `{rec.condense_mode}`**: rule = highest nDCG@10 on the follow-up questions, "
            f"ties (< {TIE}) to the shipped value, then to the cheaper mode (off < concat < llm). "
            + ", ".join(f"{k} {rp.fmt(v)}" for k, v in cs.items())
            + f" (n = {self.summary('dev', condense[0])['types'].get('followup', 0)} follow-ups)."
        )
        ks = {k: self._k_score(rec_retrieval, k, c) for k, c in rec_k.items()}
        reasons.append(
            f"**top_k {rec.top_k}**: rule = highest mean of recall@k (answerable, retrieval) and key-fact "
            f"match on detail questions (extractive answers at that k, which shows whether the "
            f"{self.runner.base.context_token_budget}-token context budget split over k sources still "
            f"holds the facts); "
            f"ties (< {TIE}) to the shipped value. "
            + ", ".join(f"k={k}: recall {rp.fmt(r)}, key facts {rp.fmt(f)} → {rp.fmt(sc)}"
                        for k, (sc, r, f) in ks.items())
            + "."
        )
        cur = calibration["current"]
        reasons.append(
            f"**Relevance floor {rec.relevance_floor:g}**: calibrated on dev top similarities (chunk "
            f"{calibration['chunk_size']}, condense {calibration['condense_mode']}): floor "
            f"{calibration['floor']:g} classifies {rp.fmt(calibration['accuracy'])} of the questions "
            f"right ({calibration['false_refusals']} answerable refused, "
            f"{calibration['missed_out_of_scope']} out-of-scope let through); the shipped "
            f"{d.relevance_floor:g}: {rp.fmt(cur['accuracy'])} ({cur['false_refusals']} answerable refused, "
            f"{cur['missed_out_of_scope']} out-of-scope let through). The calibrated value is recommended "
            f"only if it is strictly better on dev."
        )
        return reasons


def machine_note() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def now_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
