"""Evidence per paper: the sentences of its abstract that answer the question, with offsets.

For every retrieved paper, its whole abstract (from the store) is split into sentences
(:func:`app.core.text.sentence_spans`, which survives "e.g.", "et al.", "Fig. 2" and decimals) and
each sentence is scored against the question:

- ``dense``: cosine similarity of MiniLM embeddings (the bundled model, the question's own vector);
- ``lexical``: the IDF-weighted share of the question's terms the sentence holds (BM25's terms);
- ``number``: the question asks for a quantity ("how many", "what accuracy", "by how much") and the
  sentence states a number;
- ``name``: the sentence holds a name or acronym the question uses ("LightHuBERT", "WMT19"), or
  gives the name a question asks for ("What is their optimizer called?": "... called ScaledAdam";
  "Against which system is it compared?": "Compared with FasterTransformer ...", any name other
  than the question's and the paper's own). That last bonus picks which of a paper's sentences
  answer; it is left out of the paper's relevance (every abstract names things).

``score = w_dense * dense + w_lexical * lexical + w_number * number + w_name * name`` (weights
are settings, chosen on the tuning sets: docs/evaluation.md, "Evidence settings"). The best
sentence is a paper's evidence; then, for a question asking several things ("What accuracy does it
reach, and on which benchmark?"), the best sentence for each thing it asks, scored against that
part alone (:func:`question_parts`: its asking clauses, without what the question says about the
paper, which every sentence of the paper's abstract echoes); then the sentences that add most of
what the question asks besides (:func:`choose`). The embeddings of every sentence are kept: the claim
check (:mod:`app.answering.claims`) compares answer sentences with them.

The scoring functions are pure and tested without a model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from app.core.names import looks_like_a_name
from app.core.settings import Settings
from app.core.text import sentence_spans
from app.retrieval.types import PaperHit

_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:\s?%)?")
_WANTS_NUMBER = re.compile(
    r"\bhow (?:many|much|fast|large|big|long|high|low|well|small|far|often)\b|\bby (?:how|what)\b|"
    r"\bwhat (?:\w+[ -]){0,4}(?:accuracy|accuracies|scores?|rates?|percentages?|fractions?|shares?|"
    r"bleu|perplexit(?:y|ies)|speed-?ups?|throughputs?|latenc(?:y|ies)|errors?|ap|miou|f1|wer|bpc|"
    r"sizes?|numbers?|counts?|parameters|flops|improvements?|gains?|reductions?|savings?|top-1|factors?|margins?|"
    r"place|rank)\b|\bwhich (?:place|rank|year)\b|\bwhere did\b",
    re.IGNORECASE,
)
# The question asks what something is called; a sentence that gives a name answers it.
_WANTS_NAME = re.compile(
    r"\bwhat (?:is|was|are|were) (?:the )?names?\b|\bname (?:of|for) (?:the|their|its|this)\b|"
    r"\bwhat (?:is|was|are|were) (?:[\w-]+ ){1,3}(?:called|named)\b",
    re.IGNORECASE,
)
# The question asks which thing of a kind ("which dataset", "against which existing system", "what
# two techniques"): a sentence naming something the question does not answers it.
_WANTS_ENTITY = re.compile(
    r"\b(?:which|what)\s+(?:[\w-]+\s+){0,2}?(?:datasets?|benchmarks?|corpora|corpus|systems?|baselines?|"
    r"methods?|models?|techniques?|architectures?|languages?|toolkits?|librar(?:y|ies)|frameworks?|"
    r"algorithms?|metrics?|tasks?|loss(?:es)?|optimi[sz]ers?|tokeni[sz]ers?|backbones?|encoders?|decoders?)\b"
    r"|\b(?:which|what)\b[^?.]{0,40}?\b(?:beats?|outperforms?|surpass(?:es)?|compared?|against)\b",
    re.IGNORECASE,
)
_PLURAL_ACRONYM = re.compile(r"^[A-Z]{2,}s$")  # "LLMs", "GPUs": the field's words, not names
_GIVES_NAME = re.compile(
    r"\b(?i:called|named|dubbed|termed|coined|namely)\s+[\"'“‘(]?([^\W_][\w-]*)"
    r"|\b(?i:propose|introduce|present|develop)(?:s|d|ed)?\s+(?!(?:An?|The|This|These|Two|Three|Our)\b)([A-Z][\w-]*[^\W_])",
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
    wants_name: bool = False  # "what is the method called?"
    wants_entity: bool = False  # "which dataset ...?", "against which system ...?"
    words: frozenset[str] = frozenset()  # the question's words, lower case


def question_focus(question: str) -> Focus:
    names = tuple(
        dict.fromkeys(
            w.lower()
            for w in _NAME_TOKEN.findall(question)
            if looks_like_a_name(w) or (len(w) >= 2 and w.isupper() and w.isalpha())
        )
    )
    return Focus(
        wants_number=bool(_WANTS_NUMBER.search(question)),
        names=names,
        wants_name=bool(_WANTS_NAME.search(question)),
        wants_entity=bool(_WANTS_ENTITY.search(question)),
        words=frozenset(w.lower() for w in _NAME_TOKEN.findall(question)),
    )


def gives_new_name(text: str, focus: Focus, own: frozenset[str] = frozenset()) -> bool:
    """The sentence names something the question does not: "a new optimizer, called ScaledAdam"
    for "what is their optimizer called?"; for a question asking which thing of a kind ("against
    which system is it compared?"), any name (:func:`app.core.names.looks_like_a_name`) other than
    the question's and the paper's own (``own``, lower case): "Compared with FasterTransformer"."""
    if focus.wants_name and any(
        (m.group(1) or m.group(2)).lower() not in focus.words for m in _GIVES_NAME.finditer(text)
    ):
        return True
    return focus.wants_entity and any(
        looks_like_a_name(word) and not _PLURAL_ACRONYM.match(word) and word.lower() not in focus.words | own
        for word in _NAME_TOKEN.findall(text)
    )


_WH = r"(?:what|which|how|who|whom|whose|where|when|why)"
_ASKS = rf"(?:{_WH}|did|does|do|is|are|was|were|has|have|can)"
_PREPOSITION = r"(?:on|in|for|against|with|from|to|at|by|over|of|under|into|than)"
# Where a question asking two things joins them: ", and what ...", "; on which ...", "? How ...".
_PART_JOIN = re.compile(
    rf"((?:,\s*(?:and|but)\s+|;\s*(?:and\s+)?)(?=(?:{_PREPOSITION}\s+)?{_ASKS}\b)"
    rf"|\s+and\s+(?=(?:{_PREPOSITION}\s+)?{_WH}\b))",  # also "... beat on X and by how much?"
    re.IGNORECASE,
)
# What a question says about the paper before asking: "In the work on X, which dataset ...".
_PREAMBLE = re.compile(rf"^(?:in|for|from|with|according to)\b[^,?]{{3,300}},\s*(?={_ASKS}\b)", re.I)
_STARTS_ASKING = re.compile(rf"^(?:{_PREPOSITION}\s+)?{_ASKS}\b", re.IGNORECASE)
# A part asking only which paper it is ("Which paper is that?"): the whole question says what.
_ONLY_WHICH_PAPER = re.compile(r"^(?:which|what) (?:paper|work|study|article|one)s?\b[^?]{0,20}\??$", re.I)
_LAST_WH = re.compile(rf"\b(?:{_PREPOSITION}\s+)?{_WH}\b(?!.*\b{_WH}\b)", re.IGNORECASE)


def asking_clause(part: str, question_mark: bool = True) -> str | None:
    """What a part asks, without what it says about the paper: "In the work on X, which dataset
    ..." -> "which dataset ..."; "The model that does X was evaluated on which dataset?" -> "on
    which dataset?" (only in a sentence ending with a question mark, ``question_mark``). ``None``
    for a statement ("The Zipformer comes with its own optimizer.")."""
    part = _PREAMBLE.sub("", part.strip())
    if _STARTS_ASKING.match(part):
        return part
    wh = _LAST_WH.search(part) if question_mark else None
    if wh:
        return part[wh.start() :]
    return None


def question_parts(question: str) -> list[str]:
    """The things a question asks, each as its asking clause (:func:`asking_clause`): "What
    accuracy does X reach, and on which benchmark?" -> two parts; "X comes with its own optimizer.
    What is it called?" -> "What is it called?". ``[question]`` when it asks one thing plainly. A
    part of fewer than three words ("..., and how?") stays with the part before it."""
    parts: list[tuple[str, bool]] = []  # (piece, in a sentence ending with "?")
    text = question.strip()
    for a, b in sentence_spans(text):
        sentence = text[a:b]
        asks = sentence.rstrip().endswith("?")
        pieces = _PART_JOIN.split(sentence)  # text, joiner, text, ...
        for index in range(0, len(pieces), 2):
            piece = pieces[index].strip()
            if not piece:
                continue
            if index and parts and len(piece.split()) < 3:
                parts[-1] = (parts[-1][0] + pieces[index - 1] + piece, parts[-1][1])
            else:
                parts.append((piece, asks))
    clauses = [asking_clause(p, asks) for p, asks in parts]
    return [c for c in clauses if c and len(c.split()) >= 3 and not _ONLY_WHICH_PAPER.match(c)] or [question]


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


def score_sentence(
    dense: float, lexical: float, text: str, focus: Focus, weights: Weights, own: frozenset[str] = frozenset()
) -> float:
    if is_boilerplate(text):
        return 0.0
    number = 1.0 if focus.wants_number and has_number(text) else 0.0
    lowered = text.lower()
    gives_name = gives_new_name(text, focus, own)
    name = 1.0 if gives_name or any(n in lowered for n in focus.names) else 0.0
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
    part_scores: Sequence[Sequence[float]] = (),
) -> tuple[int, ...]:
    """The best sentence; then the best sentence for each part of a question asking several things
    (``part_scores[j][i]``: sentence ``i`` scored against part ``j`` alone); then, greedily, the
    sentence that adds most to them, while it scores at least ``second_ratio`` of the best one
    (best first). At most ``max_sentences``.

    A next sentence is scored with the question's terms it adds (``marginal(i, covered)``: its
    score with only the terms not yet covered counting), so a question asking two things ("what
    accuracy, and on which benchmark?") gets the sentence for each. Without ``marginal``, the
    plain scores are used.
    """
    if not scores:
        return ()
    best = max(range(len(scores)), key=lambda i: scores[i])
    picked = [best]
    for part in part_scores:
        answer = max(range(len(part)), key=lambda i: part[i])
        if len(picked) < max_sentences and part[answer] > 0 and answer not in picked:
            picked.append(answer)
    covered = {t for i in picked for t in terms_of(i)} if terms_of else set()
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


@dataclass(frozen=True)
class Asked:
    """What a question asks, for scoring sentences: its focus and IDF-weighted terms, and those of
    each of its parts when it asks several things (:func:`question_parts`)."""

    focus: Focus
    terms: Mapping[str, float]
    parts: tuple[str, ...] = ()
    part_focus: tuple[Focus, ...] = ()
    part_terms: tuple[Mapping[str, float], ...] = ()


def asked(question: str, analyzer: Analyzer) -> Asked:
    def terms(text: str) -> dict[str, float]:
        return {t: analyzer.idf(t) for t in dict.fromkeys(analyzer.tokens(text))}

    split = question_parts(question)
    parts = tuple(p for p in split if terms(p)) if split != [question] else ()
    return Asked(
        question_focus(question),
        terms(question),
        parts,
        tuple(question_focus(p) for p in parts),
        tuple(terms(p) for p in parts),
    )


def score_paper(
    question: Asked,
    sentences: Sequence[str],
    dense: Sequence[float],
    part_dense: Sequence[Sequence[float]],
    tokens: Sequence[set[str]],
    weights: Weights,
    max_sentences: int,
    second_ratio: float,
    title: str = "",
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """One paper's sentence scores and its evidence (indexes, best first). Pure: ``dense[i]`` is
    sentence ``i``'s cosine to the question, ``part_dense[j][i]`` to part ``j``, ``tokens[i]`` its
    lexical terms; the names in the paper's ``title`` are its own, not what a question asking
    "which system" wants."""
    own = frozenset(w.lower() for w in _NAME_TOKEN.findall(title))
    terms = question.terms
    total = sum(terms.values()) or 1.0
    first = {s: i for i, s in reversed(list(enumerate(sentences)))}  # a repeated sentence counts once

    def score_all(cosines: Sequence[float], asked_terms: Mapping[str, float], focus: Focus) -> list[float]:
        return [
            score_sentence(d, lexical_share(asked_terms, t), s, focus, weights, own) if first[s] == i else 0.0
            for i, (s, d, t) in enumerate(zip(sentences, cosines, tokens, strict=True))
        ]

    # A paper's relevance (its best sentence's score) leaves out the bonus for naming something
    # new: every abstract names things; it picks which of the paper's sentences answer "which X".
    scores = tuple(score_all(dense, terms, replace(question.focus, wants_entity=False)))
    part_scores = [
        score_all(cosines, part_terms, focus)
        for focus, part_terms, cosines in zip(
            question.part_focus, question.part_terms, part_dense, strict=True
        )
    ]

    def marginal(i: int, covered: set[str]) -> float:
        added = sum(w for t, w in terms.items() if t in tokens[i] and t not in covered) / total
        return score_sentence(dense[i], added, sentences[i], question.focus, weights, own)

    def terms_of(i: int) -> set[str]:
        return tokens[i] & set(terms)

    return scores, choose(scores, max_sentences, second_ratio, marginal, terms_of, part_scores)


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
    sentence of every abstract (and each part of a question asking several things)."""
    view = asked(question, analyzer)
    texts = [abstract or (hit.passages[0].text if hit.passages else "") for hit, abstract in papers]
    split = [[Sentence(text[a:b], a, b) for a, b in sentence_spans(text)] for text in texts]
    flat = [s.text for sentences in split for s in sentences]
    vectors = embed(list(view.parts) + flat) if flat else []
    part_vectors, vectors = vectors[: len(view.parts)], vectors[len(view.parts) :]
    out: list[PaperEvidence] = []
    position = 0
    for (hit, _), text, sentences in zip(papers, texts, split, strict=True):
        own = [tuple(v) for v in vectors[position : position + len(sentences)]]
        position += len(sentences)
        scores, chosen = score_paper(
            view,
            [s.text for s in sentences],
            [cosine(question_vector, vector) for vector in own],
            [[cosine(p, vector) for vector in own] for p in part_vectors] or [[] for _ in view.parts],
            [set(analyzer.tokens(s.text)) for s in sentences],
            weights,
            max_sentences,
            second_ratio,
            hit.title,
        )
        out.append(
            PaperEvidence(
                paper_id=hit.paper_id,
                title=hit.title,
                abstract=text,
                sentences=tuple(sentences),
                scores=scores,
                chosen=chosen,
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
