"""Answers laid out by the code, paper by paper, from the evidence (strategies ``extract`` and
``compose``), and which papers an answer covers.

- :func:`select_papers`: a question asking for one paper ("Which paper ...", "Is there a paper
  ...") is answered from retrieval's first paper (or the papers it names); one asking for several
  ("Which papers ...", "What work is there ...") from every paper whose evidence scores at least
  ``answer_paper_ratio`` of the best one's, so a "which papers" question lists every paper that
  clears the bar; any other (a keyword query, a detail question) from those within
  ``answer_paper_ratio_default`` of the best; retrieval's first paper always.
- :func:`paper_line`: ``Name [n]: evidence sentence. Second sentence [n].``, the short name taken
  from the title, first-person wording turned into "the authors". ``compose`` asks the model for
  the sentence instead, and keeps the evidence sentence whenever the model's fails the claim check.

Pure functions, tested without a model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from app.answering.evidence import PaperEvidence
from app.answering.followups import asks_for_other, refers_back
from app.core.names import short_name

_ONE = re.compile(
    r"\b(?:which|what|a|an|the|one|any)\s+(?:\w+[ -]){0,3}?(?:paper|work|study|system|method|model|approach|"
    r"toolkit|tool|framework|architecture|backbone|benchmark|dataset|technique)\b(?!s)"
    r"|\bis there (?:a|an|any)\b(?!.*\b(?:papers|works|studies)\b)",
    re.IGNORECASE,
)
_MANY = re.compile(
    r"\b(?:which|what|list|other)\s+(?:[\w/]+[ -]){0,2}?(?:papers|works|studies|approaches|methods|models|"
    r"systems|surveys|frameworks|techniques|architectures)\b|\bpapers\b|\blist\b|\bwhat work is there\b",
    re.IGNORECASE,
)


def asks_for_one(question: str) -> bool:
    """The question asks for one paper ("Which paper ...", "Is there a paper ...")."""
    return bool(_ONE.search(question)) and not _MANY.search(question)


def asks_for_many(question: str) -> bool:
    """The question asks for several papers ("Which papers ...", "What work is there on ...")."""
    return bool(_MANY.search(question))


def papers_to_read(question: str, top_k: int, top_k_many: int) -> int:
    """How many papers to retrieve when the request does not say: ``top_k_many`` for a question
    asking for several ("Which papers ...", "What work is there on ..."), else ``top_k``."""
    return top_k_many if asks_for_many(question) else top_k


def select_papers(
    question: str,
    evidence: Sequence[PaperEvidence],
    named: Sequence[str],
    ratio: float,
    ratio_default: float = 0.85,
    previous: Sequence[str] = (),
    focus_ratio: float = 0.5,
) -> list[PaperEvidence]:
    """The papers the answer covers, in retrieval order (named papers first, as retrieval put them):
    the named ones; for a question asking for one paper, retrieval's first; for one asking for
    several, every paper whose evidence scores at least ``ratio`` of the best; otherwise (a keyword
    query, a detail question) those scoring at least ``ratio_default`` of it, and retrieval's first
    paper in every case. Retrieval ranks whole papers (hybrid, hit@1 0.99 on dev); the evidence
    score reads one sentence, and picked another paper over a right first one (docs/evaluation.md).

    In a follow-up, ``previous`` are the papers the previous answer named: a follow-up asking for
    a paper (:func:`asks_for_other`) is answered without them while others are found; one about what
    was just discussed (:func:`refers_back`) from the first of them retrieval found again, alone,
    unless another paper's evidence scores more than ``1 / focus_ratio`` times as high (the
    follow-up's own words then point elsewhere)."""
    usable = [e for e in evidence if e.chosen]
    if not usable:
        return []
    earlier = set(previous)
    other = bool(earlier) and asks_for_other(question)
    # A follow-up asking for other work does not ask for the paper the conversation named before.
    named_set = set(named) - earlier if other else set(named)
    if named_set:
        chosen = [e for e in usable if e.paper_id in named_set]
        if chosen:
            return chosen
    if other:
        usable = [e for e in usable if e.paper_id not in earlier] or usable
    if earlier and refers_back(question):
        focus = [e for e in usable if e.paper_id in earlier]
        if focus and focus[0].relevance >= focus_ratio * max(e.relevance for e in usable):
            return focus[:1]
    best = max(e.relevance for e in usable)
    first = usable[0]  # retrieval's first paper with evidence
    if asks_for_one(question):
        return [first]
    bar = ratio if asks_for_many(question) else ratio_default
    return [e for e in usable if e is first or e.relevance >= bar * best]


_LEAD = re.compile(
    r"^(?:in (?:this|the present) (?:paper|work|study|article),?\s*|here,?\s*|to this end,?\s*)", re.I
)


def third_person(sentence: str) -> str:
    """First-person abstract wording as a statement about the paper: "We propose X" -> "The
    authors propose X", "our" -> "their"."""
    text = _LEAD.sub("", sentence.strip())
    text = re.sub(r"\bWe\b", "The authors", text)
    text = re.sub(r"\bwe\b", "the authors", text)
    text = re.sub(r"\bOur\b", "Their", text)
    text = re.sub(r"\bour\b", "their", text)
    text = re.sub(r"\bus\b", "them", text)
    return text[:1].upper() + text[1:] if text else text


def cite(sentence: str, marker: int) -> str:
    """The sentence with its citation before the final stop: "... accuracy [1]."."""
    text = sentence.strip()
    match = re.search(r"[.!?][\"'”’)\]]*$", text)
    if match:
        return f"{text[: match.start()].rstrip()} [{marker}]{text[match.start() :]}"
    return f"{text} [{marker}]."


def paper_line(evidence: PaperEvidence, marker: int, sentences: Sequence[str] | None = None) -> str:
    """One paper's part of an answer: ``Name [n]: first sentence. Next sentence [n].`` (the
    marker after the name cites the first sentence)."""
    texts = list(sentences) if sentences is not None else [third_person(s.text) for s in evidence.evidence]
    if not texts:
        return ""
    rest = [cite(t, marker) for t in texts[1:]]
    return " ".join([f"{short_name(evidence.title)} [{marker}]: {texts[0].strip()}", *rest])


def layout(lines: Sequence[str]) -> str:
    """One paper: its line. Several: one line each, as a list."""
    if len(lines) == 1:
        return lines[0]
    return "\n".join(f"- {line}" for line in lines)
