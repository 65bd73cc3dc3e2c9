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

And, in the service (:class:`app.answering.pipeline.NamedClaimChecker`, checked between 1 and 2):
it names no paper but the ones it cites (:func:`names_verdict`). A name is a corpus paper's name
(the :class:`~app.core.names.NameIndex` of every title: "Linformer", "linformer", "Swin V2"),
a retrieved source's title in any case, a run of capitalised words that reads as a title
("Attention Is All You Need", "Quantum Banana Transformers"), or "X et al.", plain, quoted or
emphasised; it passes when a cited paper's title or abstract holds it (so an evidence sentence
naming the methods it compares with keeps them), unless it is a title the sources' text quotes
that names none of them (:func:`app.answering.citations.foreign_titles`: a planted instruction's).

A sentence that fails is replaced by the evidence sentence of the paper it cites, or dropped, and
reported (``unsupported`` in the result). The functions here are pure and tested without a model;
the similarity comes in as numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from app.answering.citations import foreign_titles, match_title
from app.core.names import NameIndex, looks_like_a_name, name_key
from app.core.records import normalize_title
from app.core.text import sentence_spans

_MARKER = re.compile(r"\[(\d{1,3})\]")
# Not after a letter, digit, "." or "," (the tail of "1,536times1,536" is no number of its own).
_NUMBER = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)*")
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


# --- names of papers ------------------------------------------------------------------------------
# Lower-case words a title keeps inside it ("Masked Autoencoder for Self-Supervised Pre-training").
_JOINERS = frozenset(
    {"a", "an", "the", "of", "for", "with", "and", "or", "in", "on", "to", "via", "by", "from", "at"}
    | {"as", "into", "without", "through", "towards", "toward", "over", "under", "vs", "versus", "using"}
)
# Words that are no name in any case ("The", "Is", "All", "You", "Their"): never counted as a
# title's words, and not part of one at either end of a run.
_CONNECTORS = _JOINERS | {"is", "are", "all", "you", "we", "our", "their", "its", "this", "these", "that"}
_RUN_WORD = re.compile(r"[^\W_]+(?:[-.'’+][^\W_]+)*\+*")
_RUN_GAP = re.compile(r"[ \t]+")  # only spaces continue a run: any sign, marker or quote ends it
_ET_AL = re.compile(
    r"\b([A-Z][^\W\d_]+(?:[-'’][^\W\d_]+)*)(?:\s+(?:and|&)\s+[A-Z][^\W\d_]+)?,?\s+et\s+al\b\.?"
)
_NOT_TEXT = re.compile(r"\[\d{1,3}\]|[\"“”‘’*_`()\[\]{}<>]|(?<!\w)'|'(?!\w)")
MIN_TITLE_WORDS = 3  # a source's title written in lower case counts from this many words
MAX_NAME_WORDS = 4  # corpus names are looked up as runs of up to this many words


@dataclass(frozen=True)
class PaperNames:
    """What names a paper in an answer: the names the corpus's titles give their papers
    (:class:`app.core.names.NameIndex`, case and spacing folded), the retrieved sources' titles,
    and the title-like spans the sources' own text quotes but that name no source (what a planted
    instruction would have the model cite: :func:`app.answering.citations.foreign_titles`)."""

    index: NameIndex | None = None
    titles: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()

    @classmethod
    def of(cls, index: NameIndex | None, titles: Sequence[str], abstracts: Sequence[str]) -> PaperNames:
        """For one answer: the corpus's names, its sources' titles and their abstracts."""
        return cls(index, tuple(titles), tuple(foreign_titles(abstracts, list(titles))))


@lru_cache(maxsize=256)
def _word_keys(text: str) -> tuple[str, ...]:
    """The words of ``text`` as :func:`~app.core.names.name_key` folds them."""
    return tuple(key for word in normalize_title(text).split() if (key := name_key(word)))


def mentions(text: str, name: str) -> bool:
    """``text`` holds ``name`` as whole words, case, hyphens and spacing folded ("Swin V2" is in
    "SwinV2 scales ...", "RepQ-ViT" in "repq vit"; "Informer" is not in "Linformer")."""
    key = name_key(name)
    words = _word_keys(text)
    for start, word in enumerate(words):
        if not key or not key.startswith(word):
            continue
        joined, end = word, start + 1
        while len(joined) < len(key) and end < len(words):
            joined, end = joined + words[end], end + 1
        if joined == key:
            return True
    return False


def title_runs(text: str) -> list[str]:
    """Runs of capitalised words that read as a title ("Attention Is All You Need", "Quantum
    Banana Transformers"): at least :data:`MIN_TITLE_WORDS` words, every one capitalised but the
    connectors between them, two or more that are not connectors. Quotes, emphasis, markers and
    any sign but a space end a run."""
    clean = _NOT_TEXT.sub("|", text)
    words = list(_RUN_WORD.finditer(clean))
    runs: list[list[re.Match[str]]] = []
    current: list[re.Match[str]] = []
    for word in words:
        joined = bool(current) and _RUN_GAP.fullmatch(clean[current[-1].end() : word.start()]) is not None
        fits = word.group()[:1].isupper() or word.group() in _JOINERS
        if not fits or not joined:
            runs.append(current)
            current = [word] if fits else []
            continue
        current.append(word)
    runs.append(current)
    found: list[str] = []
    for run in runs:
        while run and run[0].group().casefold() in _CONNECTORS:
            run = run[1:]
        while run and run[-1].group().casefold() in _CONNECTORS:
            run = run[:-1]
        content = [w for w in run if w.group().casefold() not in _CONNECTORS]
        if len(run) >= MIN_TITLE_WORDS and len(content) >= 2:
            found.append(clean[run[0].start() : run[-1].end()])
    return found


def _spelled_alike(span: str, spelling: str) -> bool:
    """A name of several words counts only when written with its capitals ("Less is More", not
    "less is more"; "Efficient Transformers", not "efficient transformers"): such names are also
    ordinary phrases. A one-word name counts in any case ("linformer")."""
    span_words, spelled = span.split(), spelling.split()
    if len(span_words) == 1:
        return True
    if len(span_words) != len(spelled):
        return any(c.isupper() for c in span)
    return all(s[:1].isupper() or not t[:1].isupper() for s, t in zip(span_words, spelled, strict=True))


def corpus_names(text: str, index: NameIndex) -> list[str]:
    """The names of corpus papers ``text`` uses, as written in it, longest first; a word inside a
    longer name is not looked up again."""
    clean = _NOT_TEXT.sub("|", text)
    words = list(_RUN_WORD.finditer(clean))
    taken: set[int] = set()
    found: list[str] = []
    for size in range(min(MAX_NAME_WORDS, len(words)), 0, -1):
        for start in range(len(words) - size + 1):
            run = words[start : start + size]
            positions = set(range(start, start + size))
            if positions & taken:
                continue
            if any(
                _RUN_GAP.fullmatch(clean[a.end() : b.start()]) is None
                for a, b in zip(run, run[1:], strict=False)
            ):
                continue
            span = re.sub(r"['’]s$", "", clean[run[0].start() : run[-1].end()])  # "Linformer's"
            key = name_key(span)
            if key in index.papers_by_key and _spelled_alike(span, index.spelling[key]):
                found.append(span)
                taken |= positions
    return found


def paper_names_in(sentence: str, names: PaperNames) -> list[str]:
    """Every name of a paper in ``sentence``, as written: corpus names, retrieved titles (in any
    case), title-like runs of capitalised words, and authors ("Vaswani et al."). A marker ends a
    name: "Linformer [1] and RepQ-ViT [2]" is two names, not one title."""
    text = without_markers(sentence)
    found: list[str] = []
    if names.index is not None:
        found += corpus_names(sentence, names.index)
    found += [
        t for t in names.titles if len(normalize_title(t).split()) >= MIN_TITLE_WORDS and mentions(text, t)
    ]
    authors = [m.group(0).rstrip(".") for m in _ET_AL.finditer(text)]
    found += title_runs(_ET_AL.sub("|", sentence)) + authors
    return list(dict.fromkeys(found))


def foreign_names(sentence: str, cited_texts: Sequence[str], names: PaperNames) -> list[str]:
    """The names of papers in ``sentence`` that the papers it cites do not back: a name no cited
    text (title and abstract) holds, so another paper's, a wrong marker's, or an invented one. A
    name the cited abstract itself uses is backed (an evidence sentence quoting "we compare with
    BERT" keeps it), except a title the sources quote but that names none of them
    (:attr:`PaperNames.foreign`), which is never repeated."""
    text = without_markers(sentence)
    out = [f for f in names.foreign if mentions(text, f)]
    out += [name for name in paper_names_in(sentence, names) if not _backed(name, cited_texts)]
    return list(dict.fromkeys(out))


_CONJUNCTION = re.compile(r"\s+(?:and|or|vs\.?|versus|&)\s+")


def _backed(name: str, cited_texts: Sequence[str]) -> bool:
    """A cited text holds ``name``, or each part of a list the sentence joined ("R or Stata" for
    "R and Stata", "BERT and Reformer" for "Reformer and BERT"); or it is a cited title."""
    parts = _CONJUNCTION.split(name)
    return (
        all(any(mentions(cited, part) for cited in cited_texts) for part in parts)
        or any(mentions(cited, name) for cited in cited_texts)
        or _is_a_cited_title(name, cited_texts)
    )


def _is_a_cited_title(name: str, cited_texts: Sequence[str]) -> bool:
    """``name`` is (nearly) a cited paper's title or one side of its colon: a title written with
    a small slip ("Post-Training Quantization of Vision Transformers" for "... for ..."). Only for
    titles: a short name near another ("Informer", "Linformer") is another paper. ``cited_texts``
    are ``title\nabstract``, as the claim check gives them."""
    if len(name.split()) < MIN_TITLE_WORDS:
        return False
    titles = [text.split("\n", 1)[0] for text in cited_texts]
    parts = [part.strip() for title in titles for part in title.split(":", 1)]
    return match_title(name, titles) is not None or match_title(name, parts) is not None


def names_verdict(sentence: str, cited_texts: Sequence[str], names: PaperNames) -> Verdict | None:
    """A failing verdict when the sentence names what it does not cite (:func:`foreign_names`),
    else None (the other checks decide)."""
    foreign = foreign_names(sentence, cited_texts, names)
    if not foreign:
        return None
    shown = ", ".join(f"“{f}”" for f in foreign[:3])
    if all(f in names.foreign for f in foreign):
        return Verdict(False, f"it repeats {shown}, quoted in the sources but the title of none of them")
    return Verdict(False, f"it names {shown}, which is not a paper it cites nor in a cited abstract")
