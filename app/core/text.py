"""Small text functions shared by retrieval and answering: content words and sentences.

Pure functions, tested without a model.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
REPLACEMENT = "\ufffd"
# A character that makes a text not blank: anything but whitespace (Unicode's and the BOM) and
# control characters. Written with \u escapes, so the same pattern means the same in Python's ``re``
# and in the ECMA regex of a JSON Schema: the API's schema states this very rule (``pattern``).
NON_BLANK = r"[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_NON_BLANK = re.compile(NON_BLANK)
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


def clean_text(text: str) -> str:
    """Text as it may enter the system (HTTP bodies, query strings, ingested records): valid
    Unicode. A lone UTF-16 surrogate (JSON allows ``"\\ud800"``; no encoder, tokenizer or store
    does) becomes U+FFFD; NUL and the other control characters but tab and line breaks become a
    space. Everything else is kept as it is, so offsets into a cleaned text stay meaningful."""
    if text.isascii() and text.isprintable():
        return text
    text = _SURROGATE.sub(REPLACEMENT, text)
    return _CONTROL.sub(" ", text)


def is_blank(text: str) -> bool:
    """True when ``text`` has nothing but whitespace and control characters (see :data:`NON_BLANK`)."""
    return _NON_BLANK.search(text) is None


def whole_word(name: str, text: str) -> re.Match[str] | None:
    """The first occurrence of ``name`` in ``text`` as whole words: no letter, digit or hyphen on
    either side ("ViT" is not in "ViViT" nor in "ViT-L")."""
    return re.search(_whole(name), text)


def whole_words(name: str, text: str) -> list[re.Match[str]]:
    """Every occurrence of ``name`` in ``text`` as whole words (:func:`whole_word`)."""
    return list(re.finditer(_whole(name), text))


def _whole(name: str) -> str:
    return rf"(?<![\w-]){re.escape(name)}(?![\w-])"
