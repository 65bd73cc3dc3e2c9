"""The claim check: every sentence of every answer stands on the passage it cites.

Whatever wrote the answer (the code, the bundled model, a strong model behind ``OPENAI_BASE_URL``),
each of its sentences is checked against the papers it cites (their title and whole abstract):

1. it carries a citation ``[n]``;
2. every number, model name or acronym, and quoted term in it occurs in a cited paper
   (:func:`facts`, :func:`missing_facts`);
3. its meaning is close to a sentence of a cited abstract: the best cosine similarity of MiniLM
   embeddings (or, for a near copy, the text's own likeness, :func:`text_similarity`) reaches
   ``PAPERQA_CLAIM_MIN_SIMILARITY`` (calibrated on the labelled sentences of ``eval/claims/``:
   docs/evaluation.md, "Claim check"). The title and names of the cited papers are left out of
   the comparison (:func:`claim_content`): a copied title would make any sentence look close.

A sentence that fails is replaced by the evidence sentence of the paper it cites, or dropped, and
reported (``unsupported`` in the result). The functions here are pure and tested without a model;
the similarity comes in as numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.core.text import sentence_spans
from app.retrieval.names import looks_like_a_name

_MARKER = re.compile(r"\[(\d{1,3})\]")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_QUOTED = re.compile(r"[\"“”]([^\"“”\n]{2,80})[\"“”]")
_WORD = re.compile(r"[^\W_]+(?:[-.'’][^\W_]+)*")
# Capitalised words that are not names: sentence openers, and acronyms every abstract uses.
COMMON_CAPS = frozenset({"I", "A", "AI", "ML", "NLP", "CV", "LLM", "LLMs", "GPU", "GPUs", "CPU", "CPUs"})


@dataclass(frozen=True)
class AnswerSentence:
    """One sentence of an answer and the citation numbers in it (1-based, as written)."""

    text: str
    start: int
    end: int
    markers: tuple[int, ...]


def answer_sentences(text: str) -> list[AnswerSentence]:
    out = []
    for start, end in sentence_spans(text):
        piece = text[start:end]
        markers = tuple(dict.fromkeys(int(m) for m in _MARKER.findall(piece)))
        out.append(AnswerSentence(piece, start, end, markers))
    return out


def without_markers(text: str) -> str:
    return re.sub(r"\s+([.,;:!?])", r"\1", _MARKER.sub("", text)).strip()


def claim_content(sentence: str, names: Sequence[str]) -> str:
    """What a sentence claims, for the similarity check: without its markers, a leading list
    number, and the cited papers' titles and names (a title copied into a sentence makes it look
    close to its abstract whatever else it says)."""
    text = without_markers(sentence)
    text = re.sub(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+", "", text)
    for name in sorted({n for n in names if n}, key=len, reverse=True):
        text = re.sub(rf"[\"“”']?{re.escape(name)}[\"“”']?", " ", text, flags=re.IGNORECASE)
    text = re.sub(r"^\s*[:,;.-]+\s*", "", re.sub(r"\s+", " ", text)).strip()
    return text or without_markers(sentence)


def text_similarity(claim: str, sentences: Sequence[str]) -> float:
    """How nearly the claim copies a sentence (difflib ratio, case folded): an evidence sentence
    reworded only in person ("We propose" -> "The authors propose") is ~0.9 to its source."""
    from difflib import SequenceMatcher

    folded = claim.casefold()
    return max((SequenceMatcher(None, folded, s.casefold()).ratio() for s in sentences), default=0.0)


def _normalise_number(number: str) -> str:
    return number.replace(",", "")


def facts(sentence: str) -> list[str]:
    """What in the sentence must be found in a cited paper: numbers, model names and acronyms,
    and quoted terms."""
    text = without_markers(sentence)
    found: list[str] = []
    found += [m.group(1) for m in _QUOTED.finditer(text)]
    found += [_normalise_number(n) for n in _NUMBER.findall(text)]
    for word in _WORD.findall(text):
        core = word.strip(".-'’")
        if core in COMMON_CAPS or len(core) < 2:
            continue
        if looks_like_a_name(core) or (core.isupper() and core.isalpha()):
            found.append(core)
    return list(dict.fromkeys(found))


def _present(fact: str, texts: Sequence[str]) -> bool:
    if _NUMBER.fullmatch(fact):
        return any(re.search(rf"(?<![\d.,]){re.escape(fact)}(?![\d])", _normalise_number(t)) for t in texts)
    folded = fact.casefold()
    return any(folded in t.casefold() for t in texts)


def missing_facts(sentence: str, cited_texts: Sequence[str]) -> list[str]:
    """The sentence's facts that no cited text holds (numbers exactly, names case-insensitively)."""
    return [f for f in facts(sentence) if not _present(f, cited_texts)]


@dataclass(frozen=True)
class Verdict:
    supported: bool
    reason: str = ""
    similarity: float | None = None


def judge(
    sentence: AnswerSentence,
    n_sources: int,
    cited_texts: Sequence[str],
    similarity: float | None,
    min_similarity: float,
) -> Verdict:
    """The three checks, in order (see the module docstring). ``cited_texts`` are the title and
    abstract of each paper the sentence cites; ``similarity`` the best cosine between the sentence
    and a sentence of those abstracts (None: not measured, the check is skipped)."""
    valid = [m for m in sentence.markers if 1 <= m <= n_sources]
    if not valid:
        return Verdict(False, "it cites no retrieved paper")
    missing = missing_facts(sentence.text, cited_texts)
    if missing:
        shown = ", ".join(f"“{m}”" for m in missing[:3])
        return Verdict(
            False, f"{shown} {'is' if len(missing) == 1 else 'are'} not in the cited abstract", similarity
        )
    if similarity is not None and similarity < min_similarity:
        return Verdict(
            False,
            f"it says what no sentence of the cited abstract says (similarity {similarity:.2f})",
            similarity,
        )
    return Verdict(True, "", similarity)


_CUT_END = re.compile(r"[.!?][\"'”’)\]]*\s*(?:\[\d{1,3}\]\s*)*$|\[\d{1,3}\]\s*[.!?]?\s*$")


def trim_to_complete(text: str) -> tuple[str, bool]:
    """A reply cut mid-sentence (by the token limit) trimmed to its last complete sentence.
    Returns the text and whether anything was cut."""
    stripped = text.rstrip()
    if not stripped or _CUT_END.search(stripped):
        return stripped, False
    spans = sentence_spans(stripped)
    complete = [s for s in spans if _CUT_END.search(stripped[s[0] : s[1]])]
    if not complete:
        return "", True
    return stripped[: complete[-1][1]], True
