"""``python -m eval evidence``: how the evidence settings were chosen (tuning sets only).

For every answerable question, the papers retrieval gives the answer (the service's own search),
their abstracts' sentences and what each sentence's score is made of (MiniLM similarity to the
question and to each part it asks, lexical terms) are computed once; then a grid of the evidence
and paper-selection settings is replayed over them with the service's own functions
(:func:`app.answering.evidence.score_paper`, :func:`app.answering.compose.select_papers`), no
model needed: for each setting, the share of one-paper questions whose gold paper the answer would
cite, the citation precision, the citation recall on "which papers" questions and the share of key
facts of detail questions the evidence states. The best mean of the four (ties: fewer sentences)
is printed with its ``PAPERQA_*`` lines.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.answering.compose import asks_for_many, select_papers
from app.answering.evidence import (
    Asked,
    PaperEvidence,
    Sentence,
    Weights,
    asked,
    cosine,
    score_paper,
)
from app.core.records import normalize_title
from app.core.text import sentence_spans

GRID = {
    "lexical": (0.5, 1.0),
    "number": (0.0, 0.1, 0.2),
    "name": (0.0, 0.1, 0.2),
    "sentences": (2, 3),
    "second_ratio": (0.4, 0.5, 0.6, 0.8),
    "paper_ratio": (0.5, 0.6, 0.7, 0.8),
    "paper_ratio_default": (0.85, 0.9, 1.0),
    "many_k": (5, 6, 8, 10),  # papers retrieved for a question asking for several
}
SCORING = ("lexical", "number", "name", "sentences", "second_ratio")  # what the evidence depends on


@dataclass
class PaperFeatures:
    title: str
    paper_id: str
    sentences: list[str]
    dense: list[float]
    part_dense: list[list[float]]
    tokens: list[set[str]]


@dataclass
class QuestionFeatures:
    question: str
    type: str
    gold: set[str]
    facts: list[str]
    named: list[str]
    asked: Asked
    papers: list[PaperFeatures]  # retrieval's first max(GRID["many_k"]) papers, in its order
    top_k: int  # the papers an answer reads when the question does not ask for several
    previous: list[str] = field(default_factory=list)  # a follow-up's previously cited papers
    focus_ratio: float = 0.5  # the service's PAPERQA_FOLLOWUP_FOCUS_RATIO


def features(services: Any, questions: Sequence[Any], settings: Any) -> list[QuestionFeatures]:
    """The expensive part, once: retrieval, abstracts, sentence embeddings. Blocking."""
    from app.answering.condense import context_for, weights_for
    from app.answering.followups import previous_papers
    from app.retrieval.queries import standalone_queries

    retriever = services.retriever
    lexical = retriever.lexical
    model = retriever.embed_model
    out = []
    for q in questions:
        if not q.answerable:
            continue
        queries = standalone_queries(q.messages)
        deepest = max(*GRID["many_k"], settings.top_k_many, settings.top_k)
        result = retriever.search(
            queries,
            settings.retrieval_mode,
            deepest,
            weights_for(queries, settings),
            context_for(q.messages, settings),
        )
        found = services.papers.get(ids=[h.paper_id for h in result.hits], include=["documents"])
        abstracts = dict(zip(found["ids"], found["documents"], strict=True))
        question = q.messages[-1]["content"]
        view = asked(question, lexical)
        vector = model.get_query_embedding(question)
        part_vectors = [model.get_text_embedding(p) for p in view.parts]
        papers = []
        for hit in result.hits:
            text = abstracts.get(hit.paper_id) or ""
            sentences = [text[a:b] for a, b in sentence_spans(text)]
            vectors = [model.get_text_embedding(s) for s in sentences]  # one at a time, as the service
            papers.append(
                PaperFeatures(
                    hit.title,
                    hit.paper_id,
                    sentences,
                    [cosine(vector, v) for v in vectors],
                    [[cosine(p, v) for v in vectors] for p in part_vectors],
                    [set(lexical.tokens(s)) for s in sentences],
                )
            )
        out.append(
            QuestionFeatures(
                question,
                q.type,
                {normalize_title(t) for t in q.gold_titles},
                list(q.key_facts),
                list(result.signals.named),
                view,
                papers,
                settings.top_k,
                previous_papers(q.messages, lexical.names, [(h.paper_id, h.title) for h in result.hits]),
                settings.followup_focus_ratio,
            )
        )
    return out


def paper_evidence(q: QuestionFeatures, setting: dict[str, float]) -> list[PaperEvidence]:
    """Every paper's evidence under ``setting``, as the service builds it (no abstract text)."""
    weights = Weights(1.0, setting["lexical"], setting["number"], setting["name"])
    out = []
    for p in q.papers:
        scores, chosen = score_paper(
            q.asked,
            p.sentences,
            p.dense,
            p.part_dense,
            p.tokens,
            weights,
            int(setting["sentences"]),
            setting["second_ratio"],
            p.title,
        )
        sentences = tuple(Sentence(s, 0, len(s)) for s in p.sentences)
        out.append(PaperEvidence(p.paper_id, p.title, "", sentences, scores, chosen))
    return out


def replay(
    data: Sequence[QuestionFeatures],
    setting: dict[str, float],
    evidence: Sequence[list[PaperEvidence]] | None = None,
) -> dict[str, float]:
    """What the answers would cite and state with ``setting`` (pure); ``evidence[i]``, if given,
    is :func:`paper_evidence` of question ``i`` under the same scoring settings."""
    single = single_n = precision_hits = precision_n = recall = recall_n = facts = facts_n = sentences = 0.0
    for index, q in enumerate(data):
        found = evidence[index] if evidence is not None else paper_evidence(q, setting)
        found = found[: int(setting["many_k"]) if asks_for_many(q.question) else q.top_k]
        selected = select_papers(
            q.question,
            found,
            q.named,
            setting["paper_ratio"],
            setting["paper_ratio_default"],
            q.previous,
            q.focus_ratio,
        )
        if not selected:
            continue
        cited = [normalize_title(e.title) for e in selected]
        sentences += sum(len(e.chosen) for e in selected)
        precision_hits += sum(c in q.gold for c in cited)
        precision_n += len(cited)
        if len(q.gold) == 1:
            single_n += 1
            single += any(c in q.gold for c in cited)
        if q.type == "multi":
            recall_n += 1
            recall += len(q.gold & set(cited)) / len(q.gold)
        if q.type == "detail":
            stated = " ".join(s.text.lower() for e in selected for s in e.evidence)
            facts_n += len(q.facts)
            facts += sum(f.lower() in stated for f in q.facts)
    figures = {
        "single_gold_cited": single / max(single_n, 1),
        "citation_precision": precision_hits / max(precision_n, 1),
        "multi_recall": recall / max(recall_n, 1),
        "detail_facts": facts / max(facts_n, 1),
    }
    figures["score"] = sum(figures.values()) / 4
    figures["sentences_per_answer"] = sentences / max(len(data), 1)
    return figures


def sweep(data: Sequence[QuestionFeatures]) -> list[tuple[dict[str, float], dict[str, float]]]:
    """Every setting of :data:`GRID`, best first (ties: fewer sentences per answer). The evidence
    is built once per scoring setting, the paper selection replayed over it."""
    keys = list(GRID)
    selection = [k for k in keys if k not in SCORING]
    results = []
    for scoring in itertools.product(*(GRID[k] for k in SCORING)):
        base = dict(zip(SCORING, scoring, strict=True))
        evidence = [paper_evidence(q, base) for q in data]
        for values in itertools.product(*(GRID[k] for k in selection)):
            setting = {**base, **dict(zip(selection, values, strict=True))}
            results.append(({k: setting[k] for k in keys}, replay(data, setting, evidence)))
    results.sort(key=lambda r: (-round(r[1]["score"], 6), r[1]["sentences_per_answer"]))
    return results


def sweep_summary(services: Any, questions: Sequence[Any], settings: Any, top: int = 5) -> dict[str, Any]:
    """The whole sweep, as ``python -m eval evidence`` prints it and the report shows it: the
    shipped setting's figures and the ``top`` best settings. Blocking."""
    data = features(services, questions, settings)
    results = sweep(data)
    shipped = shipped_setting(settings)
    return {
        "questions": len(data),
        "settings": len(results),
        "shipped_setting": shipped,
        "shipped": replay(data, shipped),
        "top": results[:top],
        "lines": settings_lines(results[0][0]) if results else [],
    }


def settings_lines(setting: dict[str, float]) -> list[str]:
    return [
        f"PAPERQA_EVIDENCE_WEIGHT_LEXICAL={setting['lexical']:g}",
        f"PAPERQA_EVIDENCE_WEIGHT_NUMBER={setting['number']:g}",
        f"PAPERQA_EVIDENCE_WEIGHT_NAME={setting['name']:g}",
        f"PAPERQA_EVIDENCE_SENTENCES={setting['sentences']:g}",
        f"PAPERQA_EVIDENCE_SECOND_RATIO={setting['second_ratio']:g}",
        f"PAPERQA_ANSWER_PAPER_RATIO={setting['paper_ratio']:g}",
        f"PAPERQA_ANSWER_PAPER_RATIO_DEFAULT={setting['paper_ratio_default']:g}",
        f"PAPERQA_TOP_K_MANY={setting['many_k']:g}",
    ]


def shipped_setting(settings: Any) -> dict[str, float]:
    """The grid's knobs as the settings give them."""
    return {
        "lexical": settings.evidence_weight_lexical,
        "number": settings.evidence_weight_number,
        "name": settings.evidence_weight_name,
        "sentences": settings.evidence_sentences,
        "second_ratio": settings.evidence_second_ratio,
        "paper_ratio": settings.answer_paper_ratio,
        "paper_ratio_default": settings.answer_paper_ratio_default,
        "many_k": settings.top_k_many,
    }
