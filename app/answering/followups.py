"""What a follow-up refers to: the papers the previous answer cited, and whether the follow-up
asks about them or for other papers. Pure functions, tested without a model.

After "MEGABYTE [1] segments byte sequences into patches ...", the follow-up "How does it split the
work inside those patches?" is about MEGABYTE (:func:`refers_back`): it is answered from that paper
alone, and covered whatever the coverage signals of its vague words say, as long as retrieval
finds the paper again. "Has anyone made a causal version of that?" asks for another paper
(:func:`asks_for_other`): it is answered without the papers just cited while others are found.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from app.core.names import NameIndex, NameMatch, short_name
from app.core.records import normalize_space
from app.core.text import whole_word
from app.retrieval.queries import Turn

_BACK_SUBJECT = r"(?:it|they|this|that|these|those|the (?:paper|model|method|authors|approach))"
_OTHER = re.compile(
    r"\b(?:which|what|any|a|an|one|some)\s+(?:[\w-]+\s+){0,3}?(?:papers?|works|stud(?:y|ies)|toolkits?)\b"
    r"|\b(?:which|what|any|some)\s+(?:[\w-]+\s+){0,3}?(?:works?|models?|methods?|approach(?:es)?|systems?|architectures?)\b"
    rf"(?!\s+(?:does|do|did|is|are|was|were|has|have|can|could|would)\s+{_BACK_SUBJECT}\b)"
    r"|\bis there (?:a|an|any|something|anything)\b|\bare there\b|\bsimilar\b|\bwhat about\b|^\s*and for\b"
    r"|\b(?:any|some)(?:one|body|thing) (?:like|similar)\b|\blike (?:this|that|these|those|it)\b"
    r"|\b(?:anyone|anybody|someone|somebody|other|others|else|another|beyond|further|later)\b"
    r"|\bfollow-up work\b|\bha(?:s|ve) (?:it|they|this|that) been (?:adapted|applied|extended|tried)\b",
    re.IGNORECASE,
)
_CHOICE = re.compile(r"\b(?:which|what) (?:one )?of (?:them|these|those|the \w+)\b", re.IGNORECASE)
_BACK = re.compile(
    r"\b(?:it|its|they|their|theirs|them|this|these|those|the (?:paper|model|method|authors|approach))\b",
    re.IGNORECASE,
)


def asks_for_other(question: str) -> bool:
    """A follow-up asking for a paper or for other work ("Which paper ...", "Is there ...", "Has
    anyone ...", "What else ...", "Has it been adapted ..."): after an answer, that is another
    paper than the ones just discussed."""
    return bool(_OTHER.search(question))


def chooses_among(question: str) -> bool:
    """ "Which of them uses log2 quantizers?": a choice among the papers just discussed."""
    return bool(_CHOICE.search(question))


def refers_back(question: str) -> bool:
    """A follow-up about what was just discussed ("What loss does it train with?"), asking for no
    paper, nor to choose among papers ("Which of them ..." is answered by the usual rules)."""
    return bool(_BACK.search(question)) and not asks_for_other(question) and not chooses_among(question)


_MARKER = re.compile(r"\[(\d+)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _norm(text: str) -> str:
    return normalize_space(text).lower()


def previous_papers(
    messages: Sequence[Turn], names: NameIndex, titles: Sequence[tuple[str, str]] = ()
) -> list[str]:
    """The papers the previous answer (the last assistant turn before the question) cites, in the
    order cited, each found by what is written just before its citation marker: one of ``titles``
    (``(paper_id, title)``, e.g. the papers retrieval found for the follow-up), or else the name a
    title gives ("MEGABYTE [1] segments ...", "ViViT: A Video Vision Transformer [1]"). An answer
    without markers (a client that drops them, an answer typed by hand): the papers of ``titles``
    it mentions by title or short name. None when the conversation has no answer yet."""
    answers = [m["content"] for m in messages[:-1] if m["role"] == "assistant"]
    if not answers:
        return []
    text = answers[-1]
    known = [(paper_id, _norm(title)) for paper_id, title in titles if title.strip()]
    short = [
        (paper_id, _norm(short_name(title))) for paper_id, title in titles if len(short_name(title)) >= 3
    ]
    if not _MARKER.search(text):  # an answer written without markers ("That is FNet: ..., which ...")
        opening = _SENTENCE_END.split(text, maxsplit=1)[0]
        return _mentioned(_norm(text), known, short, names.match(opening))
    found: list[str] = []
    start = 0
    for marker in _MARKER.finditer(text):
        segment = _norm(text[start : marker.start()])  # since the previous marker
        lead = _SENTENCE_END.split(text[start : marker.start()])[-1]  # this sentence, up to the marker
        start = marker.end()
        lowered = _norm(lead)
        # A title (which may hold a "?"), else a title's short name, else a name the index knows:
        # the one written closest to the marker.
        by_title = [(segment.rfind(title), paper_id) for paper_id, title in known if title in segment]
        by_short = [(lowered.rfind(name), paper_id) for paper_id, name in short if whole_word(name, lowered)]
        if by_title or by_short:
            found.append(max(by_title or by_short)[1])
            continue
        matches = [m for m in names.match(lead) if len(m.paper_ids) == 1]
        if matches:
            closest = max(matches, key=lambda m: (lowered.rfind(_norm(m.name)), len(m.name)))
            found.append(closest.paper_ids[0])
    return list(dict.fromkeys(found))


def _mentioned(
    text: str,
    known: Sequence[tuple[str, str]],
    short: Sequence[tuple[str, str]],
    named: Sequence[NameMatch] = (),
) -> list[str]:
    """The papers whose title, or else short name (as whole words), ``text`` mentions, in the
    order mentioned; and the paper of the first of ``named`` (the names of the answer's first
    sentence that one title gives): what the answer is about, even when retrieval did not find it
    again ("MatFormer nests ..."). Later names are context ("... compresses ERA5 fields"), not
    the paper discussed."""
    at: dict[str, int] = {}
    for paper_id, title in known:
        if title in text:
            at[paper_id] = text.find(title)
    for paper_id, name in short:
        if paper_id not in at and (found := whole_word(name, text)):
            at[paper_id] = found.start()
    spots = [
        (found.start(), match.paper_ids[0])
        for match in named
        if len(match.paper_ids) == 1 and (found := whole_word(_norm(match.name), text))
    ]
    if spots and (first := min(spots))[1] not in at:
        at[first[1]] = first[0]
    return sorted(at, key=lambda paper_id: at[paper_id])


def about_previous(question: str, previous: Sequence[str], found: Sequence[str]) -> str | None:
    """The paper a follow-up asks about, when it refers back (:func:`refers_back`) to a paper the
    previous answer cited that is among the papers ``found`` now (the first such, in ``found``'s
    order); else None."""
    if not previous or not refers_back(question):
        return None
    earlier = set(previous)
    return next((paper_id for paper_id in found if paper_id in earlier), None)
