"""An answer with no LLM: the sentences of the top papers that best match the question, each cited.

The fallback when the LLM fails or times out, and a baseline in evaluation. Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.core.text import split_sentences, terms


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
