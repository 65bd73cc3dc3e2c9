"""Small text functions shared by retrieval and answering: content words and sentences.

Pure functions, tested without a model.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "them",
        "these",
        "they",
        "this",
        "those",
        "to",
        "was",
        "were",
        "what",
        "which",
        "who",
        "why",
        "with",
        "about",
        "any",
        "there",
        "paper",
        "papers",
        "work",
        "works",
        "study",
        "use",
        "used",
        "using",
        "we",
        "our",
        "via",
        "than",
        "then",
        "so",
        "such",
    ]
)

# A full stop after one of these does not end a sentence ("e.g. BERT", "et al. (2020)", "Fig. 2").
ABBREVIATIONS = frozenset(
    [
        "e.g",
        "eg",
        "i.e",
        "ie",
        "al",
        "vs",
        "v",
        "fig",
        "figs",
        "eq",
        "eqs",
        "sec",
        "secs",
        "no",
        "nos",
        "approx",
        "cf",
        "resp",
        "incl",
        "ca",
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "st",
        "jr",
        "sr",
        "ref",
        "refs",
        "tab",
        "tabs",
        "vol",
        "vols",
        "pp",
        "ch",
        "app",
        "viz",
        "esp",
        "dept",
        "univ",
        "inc",
        "ltd",
        "co",
        "corp",
        "est",
        "max",
        "min",
        "avg",
        "std",
        "var",
    ]
)
# A sentence ends at . ! ? (and closing quotes or brackets), before whitespace and a capital, a
# digit, a quote or an opening bracket.
_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9])")
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")


def _is_abbreviation(text: str, stop: int) -> bool:
    """Whether the full stop at ``stop`` closes an abbreviation or an initial ("J. Smith")."""
    if text[stop] != ".":
        return False
    match = _WORD_BEFORE.search(text[:stop])
    if match is None:
        return False
    word = match.group(1).rstrip(".").lower()
    if word in ABBREVIATIONS:
        return True
    return len(word) == 1 and text[stop - 1].isupper()  # an initial


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets of each sentence of ``text``, whitespace trimmed.

    Survives "e.g.", "i.e.", "et al.", "vs.", "Fig. 2", initials and decimals ("3.5" has no space
    after its point); a line break also ends a sentence.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    cuts = [m.end() for m in _BOUNDARY.finditer(text) if not _is_abbreviation(text, m.start())]
    cuts += [m.start() for m in re.finditer(r"\n", text)]
    for cut in sorted(set(cuts)) + [len(text)]:
        piece = text[start:cut]
        stripped = piece.strip()
        if stripped:
            offset = start + (len(piece) - len(piece.lstrip()))
            spans.append((offset, offset + len(stripped)))
        start = cut
    return spans


def split_sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


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
