"""Run one configuration over a question set: retrieval part, then (optionally) the answer part.

Retrieval part: ``PaperRetriever.search(queries, mode, top_k=10)`` with the service's own condensing of
follow-ups (``Answerer.queries``), timed here; the ranking is the hit titles; the coverage decision
is the service's own (``app.retrieval.coverage.coverage_of``). Answer part: the service's
``Answerer.answer`` in process, or ``POST /chat`` on a running server (``url``).

Loaded once per :class:`Runner` and shared across configurations: the embedding model, each LLM
backend, and one set of services (store, BM25 index) per evaluation collection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from tqdm import tqdm

from app.answering.claims import answer_sentences
from app.core.settings import Settings
from app.retrieval.coverage import CoverageModel, coverage_of
from eval import metrics as m
from eval.config import Config
from eval.questions import Question, corpus_titles

RANK_DEPTH = 10  # retrieval metrics are computed on the first 10 papers


def recheck(answerer: Any, question: Question, result: Any) -> int | None:
    """The claim check run again, independently, on the answer as shipped: the number of its
    sentences that fail (must be 0). None for a refusal. Blocking."""
    from app.answering.pipeline import NamedClaimChecker
    from app.retrieval.types import PaperHit, Passage

    if result.refused or not result.answer.strip():
        return None
    hits = [
        PaperHit(
            c.paper_id, c.title, c.score, (Passage(c.paper_id, c.paper_id, c.title, c.passage, c.score),)
        )
        for c in result.citations
    ]
    evidence = answerer.evidence.find(question.messages[-1]["content"], hits)
    checker = NamedClaimChecker(
        evidence,
        answerer.evidence.embed,
        answerer.settings.claim_min_similarity,
        answerer.retriever.lexical.names,
    )
    return sum(not verdict.supported for _, verdict in checker.check_text(result.answer))


Row = dict[str, Any]


def answer_metrics(
    question: Question,
    answer: str,
    cited: Sequence[str],
    refused: bool,
    titles: dict[str, str],
    context: str = "",
) -> dict[str, float | int | None]:
    """Metrics of one answer.

    Over answerable questions, a refusal counts as citing nothing and stating no fact (citation
    recall and key-fact match 0), so refusing never improves them. Citation precision and "cites
    at least one source" are over answered, answerable questions only. ``context`` is the text of
    the sources handed to the answerer: the key facts found there bound what any answerer can say.
    """
    answerable, answered = question.answerable, question.answerable and not refused
    return {
        "refused": int(refused),
        "refusal_correct": int(m.refusal_correct(refused, answerable)),
        "oos_refused": None if answerable else int(refused),
        "false_refusal": int(refused) if answerable else None,
        "citation_precision": m.citation_precision(cited, question.gold_titles) if answered else None,
        "citation_recall": m.citation_recall(cited if answered else [], question.gold_titles),
        "cites_any": int(bool(cited)) if answered else None,
        "hallucinated_citations": m.hallucinated_citations(cited, titles.values()),
        "key_fact_match": m.key_fact_match(answer if answered else "", question.key_facts)
        if answerable
        else None,
        "single_gold_cited": int(answered and m.citation_recall(cited, question.gold_titles) == 1.0)
        if answerable and len(question.gold_titles) == 1
        else None,
        "context_key_facts": m.key_fact_match(context if answered else "", question.key_facts)
        if answerable
        else None,
    }


class Runner:
    """Holds what is expensive to load; :meth:`run` evaluates one config over questions."""

    def __init__(
        self,
        base: Settings,
        embed_model=None,
        progress: bool = True,
        url: str | None = None,
        api_key: str = "",
        judge=None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.base = base
        self.progress = progress
        self.url = url.rstrip("/") if url else None
        self.api_key = api_key
        self.judge = judge
        self.log = log
        # One embedding model per embedding path (int8 ONNX, fp32 torch), loaded on first use.
        self._embed_models: dict[str, Any] = {base.embed_backend: embed_model} if embed_model else {}
        self._services: dict[str, Any] = {}
        self._backends: dict[str, Any] = {}
        self._titles: dict[str, str] | None = None

    # --- shared resources ----------------------------------------------------------------------
    @property
    def embed_model(self):
        """The embedding model of the base settings' embedding path."""
        return self.embed_model_for(self.base.embed_backend)

    def embed_model_for(self, backend: str):
        if backend not in self._embed_models:
            from app.core.embeddings import load_embed_model

            self._embed_models[backend] = load_embed_model(
                self.base.model_copy(update={"embed_backend": backend})
            )
        return self._embed_models[backend]

    @property
    def titles(self) -> dict[str, str]:
        """The corpus's papers (normalised title -> title), for the hallucinated-citation check."""
        if self._titles is None:
            self._titles = corpus_titles(self.base.corpus_paths)
        return self._titles

    def services(self, config: Config):
        """Store, retriever and prompts for the config's collection; ingested first if needed."""
        key = config.collection
        if key not in self._services:
            from app.core.errors import LayoutMismatch
            from app.services import build_services
            from ingest.pipeline import ingest

            settings = config.settings(self.base)
            embed_model = self.embed_model_for(config.embed_backend)
            started = time.perf_counter()
            try:
                summary = ingest(settings, embed_model=embed_model, progress=self.progress)
            except LayoutMismatch as exc:
                # Built with another embedder or chunking: it is the evaluation's own collection,
                # so rebuild it rather than compare vectors of two models.
                self.log(f"[eval] rebuilding {key}: {exc}")
                summary = ingest(settings, embed_model=embed_model, progress=self.progress, reset=True)
            if summary.new or summary.updated:
                self.log(f"[eval] indexed {key}: {summary.render().splitlines()[0]}")
            else:
                self.log(f"[eval] index {key} up to date ({time.perf_counter() - started:.1f} s)")
            services = build_services(settings, embed_model=embed_model, backend=None, load_llm=False)
            for mode in ("dense", "bm25", "hybrid"):  # warm caches so the first timed search is fair
                services.retriever.search(["warm-up query about transformers"], mode, top_k=RANK_DEPTH)
            self._services[key] = services
        return self._services[key]

    def backend(self, name: str):
        """One backend per kind for the whole run (the local model is loaded once)."""
        if name == "extractive":
            return None
        if name not in self._backends:
            from app.answering.llm import make_backend

            self.log(f"[eval] loading LLM backend {name}")
            self._backends[name] = make_backend(self.base.model_copy(update={"llm_backend": name}))
        return self._backends[name]

    def answerer(self, config: Config, with_llm: bool = True):
        """The service's answerer for ``config``; without the LLM when only retrieving."""
        from app.answering.evidence import EvidenceFinder
        from app.answering.pipeline import Answerer

        services = self.services(config)
        backend = self.backend(config.llm_backend) if with_llm else None
        settings = config.settings(self.base)
        evidence = EvidenceFinder(
            settings, services.papers, services.retriever.embed_model, services.retriever.lexical
        )
        return Answerer(settings, services.retriever, backend, services.prompts, evidence)

    async def aclose(self) -> None:
        for backend in self._backends.values():
            if backend is not None:
                await backend.aclose()
        self._backends.clear()

    # --- one question --------------------------------------------------------------------------
    async def _queries(self, question: Question, config: Config) -> list[str]:
        # The service's own condensing rule; the LLM is loaded only for the ``llm`` rewrite (which
        # falls back to concat when the LLM fails).
        needs_llm = config.condense_mode == "llm" and len(question.messages) > 1
        return await self.answerer(config, with_llm=needs_llm).queries(question.messages)

    async def _retrieve(self, question: Question, config: Config) -> Row:
        answerer = self.answerer(config, with_llm=False)
        started = time.perf_counter()
        queries = await self._queries(question, config)
        condensed = time.perf_counter()
        # The service's own retrieval call (``PaperRetriever.search`` with its query weights), 10 deep.
        result = await answerer.retrieve(queries, config.retrieval_mode, RANK_DEPTH, question.messages)
        done = time.perf_counter()
        ranked = [hit.title for hit in result.hits]
        coverage = coverage_of(result, CoverageModel.from_settings(answerer.settings))
        floor_refused = not coverage.covered
        metrics: dict[str, float | int | None] = dict(m.retrieval_metrics(ranked, list(question.gold_titles)))
        metrics["floor_oos_refused"] = None if question.answerable else int(floor_refused)
        metrics["floor_false_refusal"] = int(floor_refused) if question.answerable else None
        return {
            "queries": queries,
            "ranked_titles": ranked,
            "top_similarity": round(result.top_similarity, 5),
            "signals": result.signals.as_dict(),
            "query_signals": [signals.as_dict() for signals in result.query_signals],
            "coverage": coverage.reason,
            "metrics": metrics,
            "timings": {
                "condense_ms": round((condensed - started) * 1000, 1),
                "search_ms": round((done - condensed) * 1000, 1),
            },
        }

    async def _answer_in_process(self, question: Question, config: Config) -> dict[str, Any]:
        answerer = self.answerer(config)
        # top_k is in the config's settings; not passed, so that a question asking for several papers
        # reads top_k_many of them, as in the service when a request does not set top_k.
        result = await answerer.answer(question.messages, mode=config.retrieval_mode)
        data = result.model_dump(mode="json")
        data["recheck_failed"] = await asyncio.to_thread(recheck, answerer, question, result)
        return data

    async def _answer_remote(self, question: Question, config: Config, client) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": question.messages, "stream": False, "mode": config.retrieval_mode}
        if config.top_k != self.base.top_k:  # else the server's own rule (top_k, or top_k_many)
            body["top_k"] = config.top_k
        response = await client.post(f"{self.url}/chat", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"POST /chat: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    async def _answer(self, question: Question, config: Config, client) -> Row:
        started = time.perf_counter()
        try:
            if self.url:
                data = await self._answer_remote(question, config, client)
            else:
                data = await self._answer_in_process(question, config)
        except Exception as exc:  # one failed question must not lose the run
            return {"error": f"{type(exc).__name__}: {exc}", "wall_ms": None}
        wall_ms = round((time.perf_counter() - started) * 1000, 1)
        citations = [
            {"marker": c.get("marker"), "paper_id": c.get("paper_id"), "title": c.get("title", "")}
            for c in data.get("citations", [])
        ]
        row: Row = {
            "answer": data.get("answer", ""),
            "citations": citations,
            "source_titles": [s.get("title", "") for s in data.get("sources", [])],
            "refused": bool(data.get("refused", False)),
            "backend": data.get("backend"),
            "fallback_reason": data.get("fallback_reason"),
            "dropped_citations": data.get("dropped_citations", 0),
            "strategy": data.get("strategy"),
            "unsupported": data.get("unsupported", []),
            "trimmed": bool(data.get("trimmed", False)),
            "usage": data.get("usage", {}),
            "answer_timings": data.get("timings", {}),
            "wall_ms": wall_ms,
        }
        passages = [s.get("passage", "") for s in data.get("sources", [])]
        row["answer_metrics"] = answer_metrics(
            question,
            row["answer"],
            [c["title"] for c in citations],
            row["refused"],
            self.titles,
            context=" ".join(passages),
        )
        shipped = len(answer_sentences(row["answer"])) if not row["refused"] else 0
        row["answer_metrics"]["unsupported_replaced"] = (
            len(row["unsupported"]) if not row["refused"] else None
        )
        row["answer_metrics"]["sentences_shipped"] = shipped if not row["refused"] else None
        row["answer_metrics"]["shipped_unsupported"] = data.get("recheck_failed")
        row["answer_metrics"]["trimmed"] = int(row["trimmed"]) if not row["refused"] else None
        if self.judge is not None and not row["refused"] and question.answerable:
            row["judge"] = await self.judge.score(question.question, passages, row["answer"])
        return row

    # --- one config ----------------------------------------------------------------------------
    async def run(
        self,
        config: Config,
        questions: Sequence[Question],
        set_name: str,
        sink: Callable[[Row], None] | None = None,
    ) -> list[Row]:
        """Evaluate ``config`` on ``questions``; each row is also given to ``sink`` as it is made."""
        self.services(config)  # ingest / load before the progress bar starts
        if config.answers and not self.url:
            self.backend(config.llm_backend)
        client = None
        if config.answers and self.url:
            from app.client import paced_client

            # Waits out the server's rate limit (429 + Retry-After) instead of failing the run.
            client = paced_client(api_key=self.api_key, timeout=300.0)
        rows: list[Row] = []
        bar = tqdm(
            questions,
            desc=f"{set_name} {config.label or config.name}",
            unit="q",
            disable=not self.progress,
            leave=False,
        )
        try:
            for question in bar:
                row: Row = {
                    "set": set_name,
                    "config": config.name,
                    "label": config.label or config.name,
                    "id": question.id,
                    "type": question.type,
                    "question": question.question,
                    "gold_titles": list(question.gold_titles),
                    "key_facts": list(question.key_facts),
                    **({"near_topic": question.near_topic} if question.near_topic is not None else {}),
                    **(
                        {"phrasing": question.phrasing, "variant": question.variant}
                        if question.phrasing
                        else {}
                    ),
                }
                row.update(await self._retrieve(question, config))
                if config.answers:
                    answered = await self._answer(question, config, client)
                    row["metrics"].update(answered.pop("answer_metrics", {}))
                    if "judge" in answered:
                        row["metrics"].update(
                            {
                                f"judge_{k}": v
                                for k, v in answered["judge"].items()
                                if k in ("faithfulness", "relevance")
                            }
                        )
                    row.update(answered)
                rows.append(row)
                if sink is not None:
                    sink(row)
        finally:
            bar.close()
            if client is not None:
                await client.aclose()
        return rows


def config_record(config: Config) -> dict[str, Any]:
    return {"name": config.name, **asdict(config)}


async def run_all(
    runner: Runner,
    configs: Sequence[Config],
    questions: Sequence[Question],
    set_name: str,
    sink: Callable[[Row], None] | None = None,
) -> dict[str, list[Row]]:
    """Every config in turn (sequentially: they share the CPU and the one local model)."""
    out: dict[str, list[Row]] = {}
    for config in configs:
        started = time.perf_counter()
        out[config.name] = await runner.run(config, questions, set_name, sink)
        runner.log(
            f"[eval] {set_name} {config.label or config.name}: {len(questions)} questions "
            f"in {time.perf_counter() - started:.1f} s"
        )
    return out


def run_sync(coro):
    return asyncio.run(coro)
