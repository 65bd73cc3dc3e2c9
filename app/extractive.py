"""An answer with no LLM: the sentences of the top papers that best match the question, each cited.

The fallback when the LLM fails or times out, and a baseline in evaluation. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
STOPWORDS = frozenset(
    """a an and are as at be by can do does for from how i in into is it its of on or that the
    their them these they this those to was were what which who why with about any there paper
    papers work works study use used using we our via than then so such""".split()
)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def terms(text: str) -> set[str]:
    """Content words, crudely stemmed (plural and -ing/-ed endings), for overlap scoring."""
    out: set[str] = set()
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS or len(word) < 2:
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if len(word) > len(suffix) + 3 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        out.add(word)
    return out


def best_sentence(question: str, passage: str) -> str:
    """The passage sentence sharing most content words with the question (first on ties)."""
    sentences = split_sentences(passage)
    if not sentences:
        return passage.strip()
    wanted = terms(question)
    scored = [(len(wanted & terms(s)), -i, s) for i, s in enumerate(sentences)]
    return max(scored)[2]


def extractive_answer(question: str, passages: Sequence[str], max_sources: int = 3) -> str:
    """One quoted sentence per source, in source order, each followed by its marker ``[n]``."""
    parts: list[str] = []
    for number, passage in enumerate(passages[:max_sources], start=1):
        sentence = best_sentence(question, passage)
        if sentence:
            if len(sentence) > 400:
                sentence = sentence[:400].rsplit(" ", 1)[0] + " …"
            parts.append(f"{sentence} [{number}]")
    return " ".join(parts)
