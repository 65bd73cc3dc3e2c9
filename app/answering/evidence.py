"""Evidence per paper: the sentences of its abstract that answer the question, with offsets.

For every retrieved paper, its whole abstract (from the store) is split into sentences
(:func:`app.core.text.sentence_spans`, which survives "e.g.", "et al.", "Fig. 2" and decimals) and
each sentence is scored against the question:

- ``dense``: cosine similarity of MiniLM embeddings (the bundled model, the question's own vector);
- ``lexical``: the IDF-weighted share of the question's terms the sentence holds (BM25's terms);
- ``number``: the question asks for a quantity ("how many", "what accuracy", "by how much") and the
  sentence states a number;
- ``name``: the sentence holds a name or acronym the question uses ("LightHuBERT", "WMT19").

``score = w_dense * dense + w_lexical * lexical + w_number * number + w_name * name`` (weights
are settings, chosen on dev: docs/evaluation.md). The best sentence is a paper's evidence, with the
sentences that add most of what the question asks besides (:func:`choose`). The embeddings of every sentence are kept: the claim
check (:mod:`app.answering.claims`) compares answer sentences with them.

The scoring functions are pure and tested without a model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.core.names import looks_like_a_name
from app.core.settings import Settings
from app.core.text import sentence_spans
from app.retrieval.types import PaperHit

_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:\s?%)?")
_WANTS_NUMBER = re.compile(
    r"\bhow (?:many|much|fast|large|big|long|high|low|well|small|far|often)\b|\bby how\b|"
    r"\bwhat (?:\w+[ -]){0,4}(?:accuracy|score|rate|percentage|fraction|share|bleu|perplexity|"
    r"speed-?ups?|throughput|latency|error|ap|miou|f1|wer|bpc|size|number|count|parameters|flops|"
    r"improvement|gain|reduction|top-1|place|rank)\b|\bwhich (?:place|rank|year)\b|\bwhere did\b",
    re.IGNORECASE,
)
_NAME_TOKEN = re.compile(r"[^\W_]+(?:[-.][^\W_]+)*")
# Sentences that never answer a question: where the code is, a link.
_BOILERPLATE = re.compile(
    r"https?://|www\.|github\.com|\b(?:code|models?|data(?:set)?s?|implementation|weights)\b[^.]{0,60}"
    r"\b(?:is|are|will be|have been|has been)\s+(?:made\s+)?(?:publicly\s+|freely\s+)?(?:available|released|open-sourced)",
    re.IGNORECASE,
)


def is_boilerplate(text: str) -> bool:
    """A sentence about where the code or data is, or a link: never evidence."""
    return bool(_BOILERPLATE.search(text))


class Analyzer(Protocol):
    """The lexical index's view of text: its terms, and their inverse document frequency."""

    def tokens(self, text: str) -> list[str]: ...

    def idf(self, token: str) -> float: ...


@dataclass(frozen=True)
class Focus:
    """What the question asks for, beyond its words."""

    wants_number: bool
    names: tuple[str, ...]  # model-like words and acronyms of the question, lower case


def question_focus(question: str) -> Focus:
    names = tuple(
        dict.fromkeys(
            w.lower()
            for w in _NAME_TOKEN.findall(question)
            if looks_like_a_name(w) or (len(w) >= 2 and w.isupper() and w.isalpha())
        )
    )
    return Focus(wants_number=bool(_WANTS_NUMBER.search(question)), names=names)


def has_number(text: str) -> bool:
    return bool(_NUMBER.search(text))


@dataclass(frozen=True)
class Weights:
    dense: float = 1.0
    lexical: float = 1.0
    number: float = 0.2
    name: float = 0.2

    @classmethod
    def from_settings(cls, settings: Settings) -> Weights:
        return cls(
            dense=settings.evidence_weight_dense,
            lexical=settings.evidence_weight_lexical,
            number=settings.evidence_weight_number,
            name=settings.evidence_weight_name,
        )


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def lexical_share(question_terms: Mapping[str, float], sentence_terms: set[str]) -> float:
    """The IDF-weighted share of the question's terms that the sentence holds."""
    total = sum(question_terms.values())
    if not total:
        return 0.0
    return sum(w for t, w in question_terms.items() if t in sentence_terms) / total


def score_sentence(dense: float, lexical: float, text: str, focus: Focus, weights: Weights) -> float:
    if is_boilerplate(text):
        return 0.0
    number = 1.0 if focus.wants_number and has_number(text) else 0.0
    lowered = text.lower()
    name = 1.0 if any(n in lowered for n in focus.names) else 0.0
    return weights.dense * dense + weights.lexical * lexical + weights.number * number + weights.name * name


@dataclass(frozen=True)
class Sentence:
    """One sentence of an abstract: its text and where it is (``abstract[start:end] == text``)."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class PaperEvidence:
    """A retrieved paper with its abstract's sentences scored against the question."""

    paper_id: str
    title: str
    abstract: str
    sentences: tuple[Sentence, ...]
    scores: tuple[float, ...]
    chosen: tuple[int, ...]  # indexes of the evidence sentences, best first
    vectors: tuple[tuple[float, ...], ...] = field(default=(), repr=False, compare=False)
    url: str | None = None

    @property
    def relevance(self) -> float:
        """How well the paper's best sentence answers the question."""
        return self.scores[self.chosen[0]] if self.chosen else 0.0

    @property
    def evidence(self) -> list[Sentence]:
        """The evidence sentences in the order they appear in the abstract."""
        return [self.sentences[i] for i in sorted(self.chosen)]

    @property
    def best(self) -> Sentence | None:
        return self.sentences[self.chosen[0]] if self.chosen else None


def choose(
    scores: Sequence[float],
    max_sentences: int,
    second_ratio: float,
    marginal: Callable[[int, set[str]], float] | None = None,
    terms_of: Callable[[int], set[str]] | None = None,
) -> tuple[int, ...]:
    """The best sentence, then, greedily, the sentence that adds most to it, while it scores at
    least ``second_ratio`` of the best one (best first).

    A next sentence is scored with the question's terms it adds (``marginal(i, covered)``: its
    score with only the terms not yet covered counting), so a question asking two things ("what
    accuracy, and on which benchmark?") gets the sentence for each. Without ``marginal``, the
    plain scores are used.
    """
    if not scores:
        return ()
    best = max(range(len(scores)), key=lambda i: scores[i])
    picked = [best]
    covered = set(terms_of(best)) if terms_of else set()
    while len(picked) < max_sentences:
        rest = [i for i in range(len(scores)) if i not in picked]
        if not rest:
            break
        value = {i: marginal(i, covered) if marginal else scores[i] for i in rest}
        following = max(rest, key=lambda i: value[i])
        if scores[best] <= 0 or value[following] < second_ratio * scores[best]:
            break
        picked.append(following)
        if terms_of:
            covered |= terms_of(following)
    return tuple(picked)


def build_evidence(
    question: str,
    question_vector: Sequence[float],
    papers: Sequence[tuple[PaperHit, str]],
    embed: Callable[[list[str]], list[list[float]]],
    analyzer: Analyzer,
    weights: Weights,
    max_sentences: int = 3,
    second_ratio: float = 0.5,
) -> list[PaperEvidence]:
    """Evidence for each ``(hit, abstract)``, in the hits' order. One embedding call for every
    sentence of every abstract."""
    focus = question_focus(question)
    question_terms = {t: analyzer.idf(t) for t in dict.fromkeys(analyzer.tokens(question))}
    texts = [abstract or (hit.passages[0].text if hit.passages else "") for hit, abstract in papers]
    split = [[Sentence(text[a:b], a, b) for a, b in sentence_spans(text)] for text in texts]
    flat = [s.text for sentences in split for s in sentences]
    vectors = embed(flat) if flat else []
    out: list[PaperEvidence] = []
    position = 0
    for (hit, _), text, sentences in zip(papers, texts, split, strict=True):
        own = [tuple(v) for v in vectors[position : position + len(sentences)]]
        position += len(sentences)
        tokens = [set(analyzer.tokens(s.text)) & set(question_terms) for s in sentences]
        dense = [cosine(question_vector, vector) for vector in own]
        scores = tuple(
            score_sentence(d, lexical_share(question_terms, t), s.text, focus, weights)
            for s, d, t in zip(sentences, dense, tokens, strict=True)
        )

        def marginal(i: int, covered: set[str], _s=sentences, _d=dense, _t=tokens) -> float:
            new = {t: w for t, w in question_terms.items() if t not in covered}
            total = sum(question_terms.values()) or 1.0
            added = sum(w for t, w in new.items() if t in _t[i]) / total
            return score_sentence(_d[i], added, _s[i].text, focus, weights)

        out.append(
            PaperEvidence(
                paper_id=hit.paper_id,
                title=hit.title,
                abstract=text,
                sentences=tuple(sentences),
                scores=scores,
                chosen=choose(scores, max_sentences, second_ratio, marginal, tokens.__getitem__),
                vectors=tuple(own),
                url=hit.url,
            )
        )
    return out


class EvidenceFinder:
    """Loaded once (services): fetches abstracts from the store and builds :class:`PaperEvidence`."""

    def __init__(
        self, settings: Settings, papers_collection: Any, embed_model: Any, analyzer: Analyzer
    ) -> None:
        self._settings = settings
        self._papers = papers_collection
        self._embed_model = embed_model
        self._analyzer = analyzer

    def abstracts(self, paper_ids: Sequence[str]) -> dict[str, str]:
        """Whole abstracts by paper id (one store call). Blocking."""
        if not paper_ids:
            return {}
        found = self._papers.get(ids=list(paper_ids), include=["documents"])
        return {pid: doc or "" for pid, doc in zip(found["ids"], found["documents"] or [], strict=False)}

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One text at a time: the int8 model's activations are quantised per batch, so a text's
        vector would otherwise depend on the texts batched with it (cosine to itself down to 0.98),
        and the claim check on whatever else was asked."""
        return [list(self._embed_model.get_text_embedding(text)) for text in texts]

    def find(self, question: str, hits: Sequence[PaperHit]) -> list[PaperEvidence]:
        """Evidence for each hit, in the hits' order. Blocking (store call, embeddings)."""
        abstracts = self.abstracts([h.paper_id for h in hits])
        question_vector = list(self._embed_model.get_query_embedding(question))
        return build_evidence(
            question,
            question_vector,
            [(hit, abstracts.get(hit.paper_id, "")) for hit in hits],
            self.embed,
            self._analyzer,
            Weights.from_settings(self._settings),
            max_sentences=self._settings.evidence_sentences,
            second_ratio=self._settings.evidence_second_ratio,
        )
