"""The records parsers produce: a paper, or a problem with one place in one file."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

_SPACE = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w]+")
# New-style (2301.00001, 2301.00001v2) and old-style (hep-th/9901001) arXiv identifiers.
ARXIV_ID = re.compile(r"^(\d{4}\.\d{4,5}|[a-z\-]+(\.[A-Z]{2})?/\d{7})(v\d+)?$")

MetadataValue = str | int | float | bool


def normalize_space(text: str) -> str:
    """Collapse every run of whitespace (newlines included) to one space."""
    return _SPACE.sub(" ", text).strip()


def normalize_title(title: str) -> str:
    """The key two entries must share to be the same paper: case, accents, punctuation folded."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    return _NON_WORD.sub(" ", folded).strip()


def title_id(title: str) -> str:
    """Stable id for a paper with no arXiv id: a hash of its normalised title."""
    return "t-" + hashlib.sha1(normalize_title(title).encode("utf-8")).hexdigest()[:16]


def paper_id_for(raw_id: str | None, title: str) -> str:
    """arXiv id where known (``arxiv:2301.00001``, version dropped), else a given id, else a title hash."""
    if raw_id:
        raw = normalize_space(str(raw_id))
        bare = raw.removeprefix("arxiv:").removeprefix("arXiv:")
        if ARXIV_ID.match(bare):
            return "arxiv:" + re.sub(r"v\d+$", "", bare)
        if raw:
            return raw
    return title_id(title)


@dataclass(frozen=True)
class Paper:
    """One paper as read from a corpus file. ``metadata`` holds only Chroma-storable scalars."""

    id: str
    title: str
    abstract: str
    source: str
    line: int
    metadata: dict[str, MetadataValue] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """Changes when anything that ends up in the store changes."""
        digest = hashlib.sha1()
        for part in (self.title, self.abstract, repr(sorted(self.metadata.items()))):
            digest.update(part.encode("utf-8"))
            digest.update(b"\x00")
        return digest.hexdigest()


@dataclass(frozen=True)
class ParseIssue:
    """A record that could not be read; names the file and line so the user can fix it."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


def scalar_metadata(raw: dict[str, object], skip: set[str]) -> dict[str, MetadataValue]:
    """Keep what Chroma can store: scalars as they are, lists of scalars joined, the rest dropped."""
    out: dict[str, MetadataValue] = {}
    for key, value in raw.items():
        if key in skip or value is None:
            continue
        if isinstance(value, bool | int | float):
            out[key] = value
        elif isinstance(value, str):
            text = normalize_space(value)
            if text:
                out[key] = text
        elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            text = ", ".join(normalize_space(str(v)) for v in value if str(v).strip())
            if text:
                out[key] = text
    return out
