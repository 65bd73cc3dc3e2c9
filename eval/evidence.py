"""``python -m eval evidence``: how the evidence settings were chosen (dev only).

For every answerable question, the papers retrieval gives the answer (the service's own search),
their abstracts' sentences and the parts of each sentence's score (MiniLM similarity, lexical
share, number, name) are computed once; then a grid of the evidence and paper-selection settings
is replayed over them, no model needed: for each setting, the share of one-paper questions whose
gold paper the answer would cite, the citation precision, the citation recall on "which papers"
questions and the share of key facts of detail questions the evidence states. The best mean of
the four (ties: fewer sentences) is printed with its ``PAPERQA_*`` lines.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.answering.compose import asks_for_many, asks_for_one
from app.answering.evidence import Weights, choose, cosine, lexical_share, question_focus, score_sentence
from app.core.records import normalize_title
from app.core.text import sentence_spans

GRID = {
    "lexical": (0.5, 1.0),
    "number": (0.0, 0.1, 0.2),
    "name": (0.0, 0.1, 0.2),
    "sentences": (2, 3),
    "second_ratio": (0.4, 0.5, 0.6, 0.8),
    "paper_ratio": (0.6, 0.7, 0.8),
    "paper_ratio_default": (0.85, 0.9, 1.0),
    "many_k": (5, 6, 8, 10),  # papers retrieved for a question asking for several
}


@dataclass
class PaperFeatures:
    title: str
    paper_id: str
    sentences: list[str]
    dense: list[float]
    tokens: list[set[str]]
    texts_lower: list[str]


@dataclass
class QuestionFeatures:
    question: str
    type: str
    gold: set[str]
    facts: list[str]
    named: list[str]
    terms: dict[str, float]
    papers: list[PaperFeatures]  # retrieval's first max(GRID["many_k"]) papers, in its order
    top_k: int  # the papers an answer reads when the question does not ask for several


def features(services: Any, questions: Sequence[Any], settings: Any) -> list[QuestionFeatures]:
    """The expensive part, once: retrieval, abstracts, sentence embeddings. Blocking."""
    from app.answering.condense import weights_for
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
        result = retriever.search(queries, settings.retrieval_mode, deepest, weights_for(queries, settings))
        found = services.papers.get(ids=[h.paper_id for h in result.hits], include=["documents"])
        abstracts = dict(zip(found["ids"], found["documents"], strict=True))
        question = q.messages[-1]["content"]
        vector = model.get_query_embedding(question)
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
                    [set(lexical.tokens(s)) for s in sentences],
                    [s.lower() for s in sentences],
                )
            )
        out.append(
            QuestionFeatures(
                question,
                q.type,
                {normalize_title(t) for t in q.gold_titles},
                list(q.key_facts),
                list(result.signals.named),
                {t: lexical.idf(t) for t in dict.fromkeys(lexical.tokens(question))},
                papers,
                settings.top_k,
            )
        )
    return out


def replay(data: Sequence[QuestionFeatures], setting: dict[str, float]) -> dict[str, float]:
    """What the answers would cite and state with ``setting`` (pure)."""
    weights = Weights(1.0, setting["lexical"], setting["number"], setting["name"])
    single = single_n = precision_hits = precision_n = recall = recall_n = facts = facts_n = sentences = 0.0
    for q in data:
        focus = question_focus(q.question)
        total = sum(q.terms.values()) or 1.0
        chosen = []
        many = asks_for_many(q.question)
        for p in q.papers[: int(setting["many_k"]) if many else q.top_k]:
            tokens = [t & set(q.terms) for t in p.tokens]
            scores = [
                score_sentence(d, lexical_share(q.terms, t), s, focus, weights)
                for d, t, s in zip(p.dense, tokens, p.sentences, strict=True)
            ]

            def marginal(
                i: int,
                covered: set[str],
                _d=p.dense,
                _t=tokens,
                _s=p.sentences,
                _q=q.terms,
                _n=total,
                _f=focus,
            ) -> float:
                added = sum(w for t, w in _q.items() if t in _t[i] and t not in covered) / _n
                return score_sentence(_d[i], added, _s[i], _f, weights)

            picked = choose(
                scores, int(setting["sentences"]), setting["second_ratio"], marginal, tokens.__getitem__
            )
            if picked:
                chosen.append((p, scores[picked[0]], picked))
        if not chosen:
            continue
        best = max(c[1] for c in chosen)
        named = set(q.named)
        if named and any(p.paper_id in named for p, _, _ in chosen):
            selected = [c for c in chosen if c[0].paper_id in named]
        elif asks_for_one(q.question):
            selected = [max(chosen, key=lambda c: c[1])]
        else:
            bar = setting["paper_ratio"] if many else setting["paper_ratio_default"]
            selected = [c for c in chosen if c[1] >= bar * best]
        cited = [normalize_title(p.title) for p, _, _ in selected]
        sentences += sum(len(picked) for _, _, picked in selected)
        precision_hits += sum(c in q.gold for c in cited)
        precision_n += len(cited)
        if len(q.gold) == 1:
            single_n += 1
            single += any(c in q.gold for c in cited)
        if q.type == "multi":
            recall_n += 1
            recall += len(q.gold & set(cited)) / len(q.gold)
        if q.type == "detail":
            stated = " ".join(p.texts_lower[i] for p, _, picked in selected for i in picked)
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
    """Every setting of :data:`GRID`, best first (ties: fewer sentences per answer)."""
    keys = list(GRID)
    results = []
    for values in itertools.product(*(GRID[k] for k in keys)):
        setting = dict(zip(keys, values, strict=True))
        results.append((setting, replay(data, setting)))
    results.sort(key=lambda r: (-round(r[1]["score"], 6), r[1]["sentences_per_answer"]))
    return results


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
