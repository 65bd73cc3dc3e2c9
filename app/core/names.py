"""Papers asked for by name: "What is Linformer?", "tell me about swin v2", "RepQ ViT".

MiniLM knows nothing of coined names, so a question that names a paper can look unrelated to it
by embedding alone. This module finds the names in titles and matches them in questions:

- a title's names are the short name before its colon ("Linformer" in "Linformer: Self-Attention
  with Linear Complexity"; at most :data:`MAX_HEAD_WORDS` words, plus the same without generic words
  such as "Transformer": "Swin V2" for "Swin Transformer V2"), the model-like words of the title
  (inner capitals or digits: "MaskGIT", "TrOCR", "GPT-4", "DETR") and short parenthesised terms;
- names are compared by :func:`name_key`: case, hyphens, spaces and other signs folded, so
  "Swin V2", "SwinV2" and "swin-v2" are one name, and "vision diffmask" is "VISION DIFFMASK";
- a name that many titles share ("ViT", "LLM") is not a name of any one paper, nor is a single
  word common in the abstracts of other papers: both are dropped when the index is built.

Pure functions and a small index built from titles; tested without a model.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MAX_HEAD_WORDS = 3  # a longer part before the colon is a phrase ("The Need for Speed"), not a name
MAX_QUESTION_NGRAM = 4  # question words joined to look a name up ("Swin Transformer V2")
GENERIC_WORDS = frozenset({"transformer", "transformers", "model", "models", "network", "networks", "the"})

# Version markers and measures: "v2", "V2", "3D", "16x16", "8B", "4-bit".
_NOT_A_NAME = re.compile(r"^(?:v\d+(?:\.\d+)*|\d[\d.x]*[a-z]{0,2}(?:-[a-z]{0,4})?)$", re.IGNORECASE)
_TOKEN = re.compile(r"[^\W_]+(?:[-.'’][^\W_]+)*")
_PARENTHESISED = re.compile(r"\(([^()]{2,24})\)")


def name_key(text: str) -> str:
    """A name folded for comparison: case, accents' forms, hyphens, spaces and signs removed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if ch.isalnum())


def looks_like_a_name(word: str) -> bool:
    """A model-like word: one of its hyphen-parts has a capital after its first letter ("MaskGIT",
    "kMaX", "RepQ-ViT") or mixes letters and digits ("GPT-4", "T5", "Pix2Seq"). All-capital words
    ("MRI", "DETR") are names only as a title's head: most are the field's common acronyms."""
    if _NOT_A_NAME.match(word):
        return False
    if any(c.isdigit() for c in word) and any(c.isalpha() for c in word):
        return True
    parts = [p for p in re.split(r"[-.'’]", word) if p]
    return any(any(c.islower() for c in part) and any(c.isupper() for c in part[1:]) for part in parts)


_VERSION = re.compile(r"(?:[-\s]+v?\d+(?:\.\d+)?|\s+v\d+(?:\.\d+)?|\s+(?:II|III|IV|V))$", re.IGNORECASE)


def base_name(name: str) -> str | None:
    """The name without a version suffix ("FlashAttention-2" -> "FlashAttention", "DeiT III" ->
    "DeiT", "Swin Transformer V2" -> "Swin Transformer"), when what is left is still a name."""
    stripped = _VERSION.sub("", name).strip()
    if stripped == name or not stripped:
        return None
    if len(stripped.split()) >= 2 or looks_like_a_name(stripped):
        return stripped
    return None


def title_names(title: str) -> set[str]:
    """The names a title gives its paper, as written (see the module docstring)."""
    names: set[str] = set()
    head, colon, _ = title.partition(":")
    words = head.split()
    if colon and 1 <= len(words) <= MAX_HEAD_WORDS:
        names.add(head.strip())
        kept = [w for w in words if w.casefold() not in GENERIC_WORDS]
        if 2 <= len(kept) < len(words):
            names.add(" ".join(kept))
    for word in _TOKEN.findall(title):
        if looks_like_a_name(word):
            names.add(word)
            if "-" in word:  # "Clinical-BigBird" also names "BigBird"
                names.update(part for part in word.split("-") if looks_like_a_name(part))
    for inner in _PARENTHESISED.findall(title):
        if len(inner.split()) <= 2 and any(looks_like_a_name(w) or w.isupper() for w in inner.split()):
            names.add(inner.strip())
    names |= {base for name in names if (base := base_name(name))}
    return {name for name in names if len(name_key(name)) >= 2}


def question_keys(question: str, max_words: int = MAX_QUESTION_NGRAM) -> list[str]:
    """Every run of 1 to ``max_words`` consecutive words of the question, as name keys, longest first."""
    words = _TOKEN.findall(question)
    keys: list[str] = []
    for size in range(min(max_words, len(words)), 0, -1):
        for start in range(len(words) - size + 1):
            key = name_key("".join(words[start : start + size]))
            if key and key not in keys:
                keys.append(key)
    return keys


@dataclass(frozen=True)
class NameMatch:
    """A name found in a question, and every paper whose title gives that name."""

    name: str  # as the title writes it
    paper_ids: tuple[str, ...]


@dataclass
class NameIndex:
    """Name key -> the papers whose titles give that name (names shared by many titles dropped)."""

    papers_by_key: dict[str, tuple[str, ...]] = field(default_factory=dict)
    spelling: dict[str, str] = field(default_factory=dict)  # key -> the name as a title writes it

    @classmethod
    def build(
        cls,
        titles: Mapping[str, str],
        texts: Mapping[str, str] | None = None,
        max_papers: int = 4,
        max_text_share: float = 0.02,
    ) -> NameIndex:
        """From ``paper_id -> title``. ``texts`` (``paper_id -> abstract or chunks``) lets the index
        drop one-word names that are ordinary words of other papers' abstracts: a name found in the
        texts of more than ``max_text_share`` of the papers (and at least ``max_papers``) is not one
        paper's name. A name given by more than ``max_papers`` titles is dropped too."""
        papers: dict[str, set[str]] = defaultdict(set)
        spelling: dict[str, str] = {}
        for paper_id, title in titles.items():
            for name in title_names(title):
                key = name_key(name)
                papers[key].add(paper_id)
                spelling.setdefault(key, name)
        keys = {key for key, ids in papers.items() if len(ids) <= max_papers}
        if texts:
            single = {key for key in keys if len(_TOKEN.findall(spelling[key])) == 1}
            seen_in: dict[str, int] = defaultdict(int)
            key_of: dict[str, str] = {}  # word -> name_key(word): the vocabulary is small, texts are many
            for paper_id, text in texts.items():
                words = set(_TOKEN.findall(text))
                for word in words:  # not ``words - key_of.keys()``: that walks the whole vocabulary
                    if word not in key_of:
                        key_of[word] = name_key(word)
                for key in {key_of[w] for w in words} & single:
                    if paper_id not in papers[key]:
                        seen_in[key] += 1
            limit = max(max_papers, max_text_share * max(len(titles), 1))
            keys -= {key for key, count in seen_in.items() if count > limit}
        return cls(
            papers_by_key={key: tuple(sorted(papers[key])) for key in keys},
            spelling={key: spelling[key] for key in keys},
        )

    def __len__(self) -> int:
        return len(self.papers_by_key)

    def match(self, question: str) -> list[NameMatch]:
        """The names the question uses, longest first; a word already inside a longer match is not
        matched again ("Swin Transformer V2" does not also match a paper named "Swin")."""
        found: list[NameMatch] = []
        covered: list[str] = []
        for key in question_keys(question):
            if key in self.papers_by_key and not any(key in longer for longer in covered):
                found.append(NameMatch(self.spelling[key], self.papers_by_key[key]))
                covered.append(key)
        return found


def named_papers(matches: Iterable[NameMatch]) -> list[str]:
    """The paper ids of ``matches``, each once, in match order."""
    return list(dict.fromkeys(pid for match in matches for pid in match.paper_ids))


# Words of a question that only ask *about* a name: "what is X", "how does X work", "tell me about X".
QUESTION_WORDS = frozenset(
    [
        "what",
        "is",
        "are",
        "was",
        "tell",
        "me",
        "about",
        "how",
        "does",
        "do",
        "did",
        "work",
        "works",
        "working",
        "which",
        "paper",
        "papers",
        "propose",
        "proposes",
        "proposed",
        "introduce",
        "introduces",
        "introduced",
        "problem",
        "problems",
        "solve",
        "solves",
        "solved",
        "explain",
        "explains",
        "describe",
        "summarize",
        "summarise",
        "summary",
        "main",
        "idea",
        "ideas",
        "key",
        "contribution",
        "contributions",
        "who",
        "whose",
        "where",
        "the",
        "a",
        "an",
        "of",
        "in",
        "on",
        "for",
        "model",
        "models",
        "method",
        "approach",
        "architecture",
        "new",
        "give",
        "overview",
    ]
)


def asks_about(question: str, match: NameMatch, max_other_terms: int = 2) -> bool:
    """Whether the question is about the named paper itself ("What is X?", "How does x work?",
    just "X"), rather than a question that mentions a name among many other things: at most
    ``max_other_terms`` content words besides the name and words like "what", "work", "propose"."""
    from app.core.text import terms

    key = name_key(match.name)
    words = [w for w in _TOKEN.findall(question) if not (name_key(w) and name_key(w) in key)]
    other = terms(" ".join(words)) - terms(" ".join(QUESTION_WORDS))
    return len(other) <= max_other_terms


def short_name(title: str) -> str:
    """The name a paper goes by: the part before the title's colon when short, else the title."""
    head, colon, _ = title.partition(":")
    if colon and len(head.split()) <= 5 and len(head) <= 48:
        return head.strip()
    return title.strip()
