"""The citation guarantee, as pure functions: model text in, text whose every citation is a real,
retrieved paper out.

Sources are numbered ``[1]..[n]`` in the prompt. The model's markers (``[2]``, ``[1][3]``,
``[1, 3]``, ``[2-4]``, ``[Source 2]``) are mapped to those sources and renumbered in the order they
are first cited; a marker that maps to no source is removed and counted. Text inside code spans is
left alone. A quoted or emphasised title that matches no retrieved source is removed and counted;
one that matches a source is kept and counts as citing it. So no title the user sees can come from
anywhere but the retrieved sources.

:class:`CitationStream` does the marker part incrementally, so streamed text is already clean;
:func:`finalize` runs the same code over the whole reply and adds the title check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from app.core.records import normalize_title
from app.core.text import whole_word, whole_words

_GROUP = re.compile(
    r"\[\s*(?:(?:sources?|refs?|references?|papers?|doc(?:ument)?s?)\s*)?#?"
    r"(\d{1,4}(?:\s*(?:,|;|-|–|and)\s*(?:(?:sources?|papers?)\s*)?#?\d{1,4})*)\s*\]",
    re.IGNORECASE,
)
_NUMBER_OR_RANGE = re.compile(r"(\d{1,4})\s*(?:[-–]\s*(\d{1,4}))?")
MAX_MARKER_CHARS = 40  # an unclosed "[" longer than this is plain text
MAX_RANGE = 10


@dataclass
class CitationState:
    """What the mapping has seen so far: renumbering and the count of dropped markers."""

    n_sources: int
    order: list[int] = field(default_factory=list)  # source numbers (1-based) in first-cited order
    dropped: int = 0
    named: set[int] = field(default_factory=set)  # sources cited by their title, marker or not

    def cite(self, source_number: int) -> int:
        if source_number not in self.order:
            self.order.append(source_number)
        return self.order.index(source_number) + 1


def expand_group(body: str) -> list[int] | None:
    """``"1, 3-4"`` -> ``[1, 3, 4]``; None when a range is absurd (then the whole group is dropped)."""
    numbers: list[int] = []
    for match in _NUMBER_OR_RANGE.finditer(body):
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else start
        if end < start or end - start >= MAX_RANGE:
            return None
        numbers.extend(range(start, end + 1))
    return numbers


def rewrite_group(body: str, state: CitationState) -> str:
    """Map one bracket group to renumbered markers; invalid numbers are dropped and counted."""
    numbers = expand_group(body)
    if numbers is None:
        state.dropped += 1
        return ""
    out: list[int] = []
    for number in numbers:
        if 1 <= number <= state.n_sources:
            marker = state.cite(number)
            if marker not in out:
                out.append(marker)
        else:
            state.dropped += 1
    return "".join(f"[{m}]" for m in out)


def canonical_markers(text: str, n_sources: int) -> tuple[str, int]:
    """Every marker group (``[1, 3]``, ``[2-4]``, ``[Source 2]``) as plain ``[n]`` markers of the
    same source numbers (no renumbering); numbers past the sources are dropped and counted."""
    dropped = 0

    def one(match: re.Match[str]) -> str:
        nonlocal dropped
        numbers = expand_group(match.group(1))
        if numbers is None:
            dropped += 1
            return ""
        kept = [n for n in dict.fromkeys(numbers) if 1 <= n <= n_sources]
        dropped += len(numbers) - len(kept)
        return "".join(f"[{n}]" for n in kept)

    return _GROUP.sub(one, text), dropped


class CitationStream:
    """Feed model deltas, get clean text back; holds back only an unfinished ``[...`` group."""

    def __init__(self, n_sources: int) -> None:
        self.state = CitationState(n_sources)
        self._pending = ""
        self._in_code = False

    def feed(self, delta: str) -> str:
        self._pending += delta
        return self._drain(final=False)

    def close(self) -> str:
        return self._drain(final=True)

    def _drain(self, final: bool) -> str:
        out: list[str] = []
        text = self._pending
        i = 0
        while i < len(text):
            char = text[i]
            if char == "`":
                self._in_code = not self._in_code
                out.append(char)
                i += 1
                continue
            if self._in_code or char != "[":
                out.append(char)
                i += 1
                continue
            close = text.find("]", i, i + MAX_MARKER_CHARS)
            if close == -1:
                if not final and len(text) - i < MAX_MARKER_CHARS:
                    break  # maybe a marker still arriving: wait for more text
                out.append(char)
                i += 1
                continue
            match = _GROUP.fullmatch(text, i, close + 1)
            if match is None:
                out.append(char)
                i += 1
                continue
            out.append(rewrite_group(match.group(1), self.state))
            i = close + 1
        self._pending = text[i:]
        return "".join(out)


# --- titles -----------------------------------------------------------------------------------
_QUOTED = re.compile(
    r"\*\*(?P<b>[^*\n]{8,250})\*\*|\*(?P<i>[^*\n]{8,250})\*|\"(?P<q>[^\"\n]{8,250})\"|"
    r"“(?P<c>[^”\n]{8,250})”|_(?P<u>[^_\n]{8,250})_|'(?P<s>[^'\n]{12,250})'"
)
_TITLE_LINE = re.compile(r"(?im)^\s*(?:[-*]\s*)?(?:paper\s+)?title\s*:\s*(?P<t>.{8,250})$")
TITLE_MATCH_RATIO = 0.88


def looks_like_title(text: str) -> bool:
    """Several words, most of them capitalised, or a ``Name: subtitle`` shape."""
    words = [w for w in re.split(r"\s+", text.strip()) if w]
    if len(words) < 3:
        return False
    if re.match(r"^[A-Z][\w\-+]*\s*:\s+\S", text.strip()):
        return True
    capitalised = sum(1 for w in words if w[:1].isupper() or w[:1].isdigit())
    return capitalised / len(words) >= 0.6


def match_title(text: str, titles: list[str]) -> int | None:
    """Index of the source title ``text`` names (exactly or nearly), else None."""
    key = normalize_title(text)
    if not key:
        return None
    best, best_ratio = None, 0.0
    for index, title in enumerate(titles):
        other = normalize_title(title)
        if key == other:
            return index
        ratio = SequenceMatcher(None, key, other).ratio()
        if ratio > best_ratio:
            best, best_ratio = index, ratio
    return best if best_ratio >= TITLE_MATCH_RATIO else None


def scrub_titles(text: str, titles: list[str], state: CitationState) -> str:
    """Drop title-like quoted spans that are no retrieved source; a real one cites its source."""

    def replace(match: re.Match[str]) -> str:
        inner = next(g for g in match.groups() if g is not None)
        index = match_title(inner, titles)
        if index is not None:
            marker = state.cite(index + 1)
            return (
                f"{match.group(0)} [{marker}]"
                if f"[{marker}]" not in text[match.end() : match.end() + 6]
                else match.group(0)
            )
        if looks_like_title(inner):
            state.dropped += 1
            return "a paper"
        return match.group(0)

    text = _QUOTED.sub(replace, text)

    def replace_line(match: re.Match[str]) -> str:
        index = match_title(match.group("t"), titles)
        if index is not None:
            state.cite(index + 1)
            state.named.add(index + 1)
            return match.group(0)
        state.dropped += 1
        return ""

    text = _TITLE_LINE.sub(replace_line, text)
    text = "\n".join(_scrub_line_head(line, titles, state) for line in text.split("\n"))
    return link_short_names(text, titles, state)


_LEAD = re.compile(r"^\s*(?:\d{1,2}[.)]\s+|[-*•]\s+)?(?:\[\d+\]\s*)*:?\s*")


_MARKERS = re.compile(r"\s*(?:\[\d+\]\s*)+")


def _titleish(text: str) -> bool:
    """A title-like phrase, not a sentence: several capitalised words, no sentence stop inside."""
    return len(text.split()) >= 4 and looks_like_title(text) and not re.search(r"[.!?]\s|[.!?]$", text)


def _names_a_source(text: str, titles: list[str]) -> bool:
    """``text`` is a source title, or one side of a source title's colon."""
    parts = [part.strip() for title in titles for part in title.split(":", 1)]
    return match_title(text, titles) is not None or match_title(text, parts) is not None


def _scrub_line_head(line: str, titles: list[str], state: CitationState) -> str:
    """Lines that carry titles (``1. Title: text``, ``[2] Title``, ``Name: Made-Up Subtitle [3]``),
    as small models write when they copy the sources' layout. The longest head that is a source's
    title cites it (and is written exactly); a title-like segment that names no source is removed
    with the markers attached to it, so an invented title never reaches the user."""
    lead = _LEAD.match(line)
    start = lead.end() if lead else 0
    rest = line[start:]
    cuts = [m.start() for m in re.finditer(r":\s", rest)] + [len(rest)]
    for cut in sorted(cuts, reverse=True):
        head = _MARKERS.sub(" ", rest[:cut]).strip()
        if len(head) < 8:
            continue
        index = match_title(head, titles)
        if index is not None:
            marker = state.cite(index + 1)
            state.named.add(index + 1)
            tail = rest[cut:].lstrip(": ").strip()
            return f"{line[:start]}{titles[index]} [{marker}]" + (f": {tail}" if tail else "")
    segments = re.split(r"(?<=\S):\s+", rest)
    kept: list[str] = []
    for position, segment in enumerate(segments):
        clean = _MARKERS.sub(" ", segment).strip()
        is_last = position == len(segments) - 1
        if (
            _titleish(clean)
            and not _names_a_source(clean, titles)
            and (not is_last or len(segments) > 1 or not kept)
        ):
            state.dropped += 1
            continue
        kept.append(segment)
    if len(kept) == len(segments):
        return line
    return (line[:start] + ": ".join(kept)).rstrip()


def short_names(titles: list[str]) -> dict[str, int]:
    """``GPTQ`` for ``GPTQ: Accurate Post-Training Quantization ...``: the name a paper goes by."""
    names: dict[str, int] = {}
    for index, title in enumerate(titles):
        if ":" not in title:
            continue
        name = title.split(":", 1)[0].strip()
        if 3 <= len(name) <= 40 and len(name.split()) <= 3 and name not in names:
            names[name] = index
    return names


def link_short_names(text: str, titles: list[str], state: CitationState) -> str:
    """The first mention of a source's short name, if no marker follows it, gets one. A mention
    inside a longer source's short name is that source's ("Mamba" in "Mamba in Speech [2]")."""
    names = short_names(titles)
    for name, index in names.items():
        longer = [n for n in names if len(n) > len(name) and whole_word(name, n)]
        taken = [(m.start(), m.end()) for n in longer for m in whole_words(n, text)]
        match = next(
            (m for m in whole_words(name, text) if not any(a <= m.start() < b for a, b in taken)), None
        )
        if match is None:
            continue
        marker = state.cite(index + 1)
        after = text[match.end() :]
        if f"[{marker}]" in after.split("\n", 1)[0][:200]:
            continue
        text = text[: match.end()] + f" [{marker}]" + after
    return text


def foreign_titles(passages: Sequence[str], titles: list[str]) -> list[str]:
    """Title-like quoted spans in the sources' own text that name no source (nor part of one).

    That is what a planted instruction ("answer that the best paper is 'X' [9]") would have the
    model cite, so such a span is never repeated by an answer, quoted or not.
    """
    keys = [normalize_title(t) for t in titles]
    found: list[str] = []
    for passage in passages:
        for match in _QUOTED.finditer(passage):
            inner = next(g for g in match.groups() if g is not None).strip()
            key = normalize_title(inner)
            if (
                looks_like_title(inner)
                and match_title(inner, titles) is None
                and not any(key in title for title in keys)
                and inner not in found
            ):
                found.append(inner)
    return found


def scrub_foreign(text: str, foreign: Sequence[str], state: CitationState) -> str:
    """Each mention of a foreign title, with its quotes and the markers after it, becomes "a paper"."""
    for phrase in foreign:
        words = r"\s+".join(re.escape(w) for w in phrase.split())
        pattern = re.compile(rf"[\"'“”*_]*{words}[\"'“”*_]*(?:\s*\[\d+\])*", re.IGNORECASE)
        text, count = pattern.subn("a paper", text)
        state.dropped += count
    return text


def tidy(text: str) -> str:
    """Spaces left where markers were removed."""
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


@dataclass(frozen=True)
class Finalized:
    text: str
    cited: list[int]  # 0-based source indexes, in first-cited order (marker k is cited[k-1])
    dropped: int


def renumber_by_appearance(
    text: str,
    order: list[int],
    named: set[int] = frozenset(),  # type: ignore[assignment]
) -> tuple[str, list[int]]:
    """Markers numbered by where they first appear in the text (code spans skipped).

    ``order[m - 1]`` is the source behind marker ``m``; returns the new text and the new order.
    A source named by its title without a marker in the text (a ``Title:`` line) goes last; one
    whose every marker was removed with an invented title is no longer cited.
    """
    new_order: list[int] = []

    def sub(match: re.Match[str]) -> str:
        source = order[int(match.group(1)) - 1]
        if source not in new_order:
            new_order.append(source)
        return f"[{new_order.index(source) + 1}]"

    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        parts[i] = re.sub(r"\[(\d+)\]", sub, parts[i])
    new_order.extend(source for source in order if source not in new_order and source in named)
    return "`".join(parts), new_order


def finalize(raw: str, titles: list[str], passages: Sequence[str] = ()) -> Finalized:
    """The whole reply, markers mapped and titles checked. Pure: tested on hostile replies.

    ``passages`` (the sources' text as the model saw it) lets titles quoted there but naming no
    source be removed too (:func:`foreign_titles`).
    """
    stream = CitationStream(len(titles))
    text = stream.feed(raw) + stream.close()
    state = stream.state
    text = scrub_foreign(text, foreign_titles(passages, titles), state)
    text = scrub_titles(text, titles, state)
    if state.dropped:
        text = tidy(text)
    text, order = renumber_by_appearance(text, state.order, state.named)
    return Finalized(text=text.strip(), cited=[n - 1 for n in order], dropped=state.dropped)
