"""The claim check, validated: a labelled set of answer sentences (``eval/claims/labelled.jsonl``)
and how the checker of :mod:`app.answering.claims` does on it.

The set holds sentences from three origins, each with the papers it cites:

- ``model``: sentences the bundled SmolLM2 wrote (strategy ``generate``) for dev and test
  questions, labelled by hand ``supported`` or ``unsupported`` against the cited abstracts;
- ``extract``: evidence sentences as the ``extract`` strategy writes them (supported unless the
  label says otherwise);
- ``corrupted:*``: extract sentences made wrong on purpose (unsupported): ``swap`` (the citation
  moved to another retrieved paper), ``number`` (a number changed), ``name`` (a model name the
  abstract lacks put in), ``other_paper`` (a sentence of one paper cited as another).

``python -m eval claims --build`` writes candidates (``eval/claims/candidates.jsonl``) to label;
``python -m eval claims`` calibrates ``PAPERQA_CLAIM_MIN_SIMILARITY`` on the sentences of dev
questions and reports the checker's precision and recall (unsupported = positive) on those of
test questions. The corruption functions are pure and tested.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.answering.claims import facts

CLAIMS_DIR = Path(__file__).resolve().parent / "claims"
LABELLED = CLAIMS_DIR / "labelled.jsonl"
CANDIDATES = CLAIMS_DIR / "candidates.jsonl"
ORIGINS = (
    "model",
    "extract",
    "corrupted:swap",
    "corrupted:number",
    "corrupted:name",
    "corrupted:other_paper",
)
INVENTED_NAMES = ("HyperFormerX", "QuantaViT-9", "DeltaMixer", "NovaBERT-L", "OmniSparse-7B", "ZetaNet")


@dataclass(frozen=True)
class ClaimRow:
    id: str
    set: str  # dev or test: the question set the sentence's question is from
    question_id: str
    question: str
    origin: str
    sentence: str  # with its [n] markers; [n] is cited[n - 1]
    cited: tuple[str, ...]  # paper ids
    label: str  # supported | unsupported
    note: str = ""

    def as_json(self) -> str:
        data = asdict(self)
        data["cited"] = list(self.cited)
        return json.dumps(data, ensure_ascii=False)


def read_rows(path: Path) -> list[ClaimRow]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            data = json.loads(line)
            data["cited"] = tuple(data["cited"])
            rows.append(ClaimRow(**data))
    return rows


def write_rows(path: Path, rows: Iterable[ClaimRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r.as_json() + "\n" for r in rows), encoding="utf-8")


# --- corruptions (pure) -------------------------------------------------------------------------
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)")


def change_number(sentence: str, rng: random.Random) -> str | None:
    """The sentence with one of its numbers changed (to one a reader could believe), or None."""
    numbers = [
        m
        for m in _NUMBER.finditer(sentence)
        if not (sentence[m.start() - 1 : m.start()] == "[" and sentence[m.end() : m.end() + 1] == "]")
    ]
    if not numbers:
        return None
    m = rng.choice(numbers)
    value = m.group(1)
    if "." in value:
        whole, frac = value.split(".")
        new = f"{whole}.{(int(frac) + 3) % (10 ** len(frac)):0{len(frac)}d}"
    else:
        new = str(int(value) + rng.choice([2, 3, 7, 11]))
    return sentence[: m.start()] + new + sentence[m.end() :]


def insert_name(sentence: str, rng: random.Random) -> str:
    """The sentence claiming a model name that no abstract gives."""
    name = rng.choice(INVENTED_NAMES)
    head, sep, rest = sentence.partition(": ")
    if sep:
        return f"{head}: Compared with {name}, {rest[:1].lower()}{rest[1:]}"
    return f"Compared with {name}, {sentence[:1].lower()}{sentence[1:]}"


def swap_citation(sentence: str, to: int) -> str:
    """The same sentence citing source ``to`` instead."""
    return re.sub(r"\[\d+\]", f"[{to}]", sentence)


# --- metrics (pure) -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckerScore:
    n: int
    flagged: int
    unsupported: int
    true_positives: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.flagged if self.flagged else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.unsupported if self.unsupported else 1.0


def score(labels: Sequence[str], flagged: Sequence[bool]) -> CheckerScore:
    """Precision and recall of "flagged as unsupported" against the labels."""
    positives = [label == "unsupported" for label in labels]
    return CheckerScore(
        n=len(labels),
        flagged=sum(flagged),
        unsupported=sum(positives),
        true_positives=sum(f and p for f, p in zip(flagged, positives, strict=True)),
    )


def calibrate_similarity(
    rows: Sequence[ClaimRow],
    similarities: Sequence[float | None],
    fact_fails: Sequence[bool],
    no_citation: Sequence[bool],
) -> float:
    """The similarity threshold (on these rows, dev) with the best F1 of flagging unsupported
    sentences: the middle of the range of thresholds that reach it (rounded to 2 decimals), so
    that neither a paraphrase nor an unsupported sentence sits on the edge."""
    candidates = sorted({round(s, 3) for s in similarities if s is not None} | {0.0})
    labels = [r.label for r in rows]
    f1_of: dict[float, float] = {}
    for threshold in candidates:
        flagged = [
            nc or ff or (s is not None and s < threshold)
            for s, ff, nc in zip(similarities, fact_fails, no_citation, strict=True)
        ]
        result = score(labels, flagged)
        f1_of[threshold] = round(
            2 * result.precision * result.recall / (result.precision + result.recall or 1), 6
        )
    best = max(f1_of.values())
    reaching = [t for t, f in f1_of.items() if f == best]
    # the range ends where the next observed similarity would change the outcome
    above = [t for t in candidates if t > max(reaching)]
    high = above[0] if above else max(reaching)
    return round((min(reaching) + high) / 2, 2)


def by_origin(rows: Sequence[ClaimRow], flagged: Sequence[bool]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for origin in dict.fromkeys(r.origin for r in rows):
        picked = [(r, f) for r, f in zip(rows, flagged, strict=True) if r.origin == origin]
        out[origin] = {
            "n": len(picked),
            "unsupported (label)": sum(r.label == "unsupported" for r, _ in picked),
            "flagged": sum(f for _, f in picked),
            "agree": sum((r.label == "unsupported") == f for r, f in picked),
        }
    return out


def has_facts(sentence: str) -> bool:
    return bool(facts(sentence))


# --- building candidates and checking them (need the store, the embedder, the model) ---------------
def _cited_ids(text: str, paper_ids: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """``text`` with its markers renumbered 1..k over the papers it cites, and those papers."""
    order: list[str] = []

    def sub(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if not 1 <= n <= len(paper_ids):
            return ""
        pid = paper_ids[n - 1]
        if pid not in order:
            order.append(pid)
        return f"[{order.index(pid) + 1}]"

    return re.sub(r"\[(\d+)\]", sub, text).strip(), tuple(order)


async def build_candidates(
    services: Any, questions: Sequence[Any], set_name: str, seed: int = 7
) -> list[ClaimRow]:
    """Candidate sentences for the labelled set, from ``questions`` (answerable ones): the
    model's (``generate``, raw: before any check), the extract strategy's, and corruptions."""
    from app.answering.citations import canonical_markers
    from app.answering.claims import answer_sentences, trim_to_complete, without_markers
    from app.answering.compose import cite, third_person
    from app.answering.context import build_messages
    from app.answering.llm import Usage

    rng = random.Random(seed)
    engine = services.engine
    answerer = engine.answerer
    rows: list[ClaimRow] = []

    def add(q: Any, origin: str, sentence: str, cited: tuple[str, ...], label: str) -> None:
        rows.append(
            ClaimRow(f"{q.id}-{len(rows):03d}", set_name, q.id, q.question, origin, sentence, cited, label)
        )

    for q in questions:
        extract_settings = answerer.settings.model_copy(update={"answer_strategy": "extract"})
        saved = answerer.settings
        answerer.settings = extract_settings
        try:
            result = await engine.answer(q.messages)
        finally:
            answerer.settings = saved
        if result.refused or not result.citations:
            continue
        source_ids = [s.paper_id for s in result.sources]
        cited_ids = [c.paper_id for c in result.citations]
        extract_sentences = []
        for sentence in answer_sentences(result.answer):
            text, cited = _cited_ids(sentence.text.lstrip("- "), cited_ids)
            if cited:
                extract_sentences.append((text, cited))
                add(q, "extract", text, cited, "supported")
        # the model's own sentences, before any check
        if answerer.backend is not None:
            messages = build_messages(answerer.prompts, result.sources, q.messages)
            raw = await answerer.backend.complete(messages, Usage())
            raw, _ = trim_to_complete(canonical_markers(raw, len(source_ids))[0])
            for sentence in answer_sentences(raw):
                text, cited = _cited_ids(sentence.text.lstrip("-*• "), source_ids)
                if len(without_markers(text).split()) >= 4:  # not a bare list number or marker
                    add(q, "model", text, cited, "?")
        # corruptions of the extract sentences
        others = [pid for pid in source_ids if pid not in cited_ids]
        for text, cited in extract_sentences[:2]:
            if others:
                add(q, "corrupted:swap", text, (rng.choice(others),), "unsupported")
            changed = change_number(text, rng)
            if changed and changed != text:
                add(q, "corrupted:number", changed, cited, "unsupported")
            add(q, "corrupted:name", insert_name(text, rng), cited, "unsupported")
        # a sentence of another retrieved paper, cited as this one's
        non_cited = [src for src in result.sources if src.paper_id not in cited_ids and src.evidence]
        if extract_sentences and non_cited:
            body = third_person(rng.choice(non_cited).evidence[0].text)
            add(q, "corrupted:other_paper", cite(body, 1), extract_sentences[0][1], "unsupported")
    return rows


def check_rows(rows: Sequence[ClaimRow], papers: Any, embed: Any) -> list[dict[str, Any]]:
    """For each row: does it cite, which facts are missing, the best similarity to a sentence of
    a cited abstract. The checker's parts, measured separately so the threshold can be chosen."""
    from app.answering.claims import answer_sentences, missing_facts
    from app.answering.evidence import cosine
    from app.core.text import split_sentences

    ids = sorted({pid for r in rows for pid in r.cited})
    found = papers.get(ids=ids, include=["documents", "metadatas"])
    text_of = {
        pid: (str((meta or {}).get("title", "")), doc or "")
        for pid, doc, meta in zip(found["ids"], found["documents"], found["metadatas"], strict=True)
    }
    sentences = {pid: split_sentences(abstract) for pid, (_, abstract) in text_of.items()}
    flat = [(pid, s) for pid, ss in sentences.items() for s in ss]
    vectors = embed([s for _, s in flat]) if flat else []
    by_paper: dict[str, list[list[float]]] = {}
    for (pid, _), vector in zip(flat, vectors, strict=True):
        by_paper.setdefault(pid, []).append(vector)
    from app.answering.claims import claim_content, text_similarity
    from app.answering.compose import short_name

    def names(row: ClaimRow) -> list[str]:
        titles = [text_of[p][0] for p in row.cited if p in text_of]
        return [n for t in titles for n in (t, short_name(t))]

    row_vectors = embed([claim_content(r.sentence, names(r)) for r in rows])
    out = []
    for row, vector in zip(rows, row_vectors, strict=True):
        sentence = answer_sentences(row.sentence)
        markers = [m for s in sentence for m in s.markers if 1 <= m <= len(row.cited)]
        cited = [row.cited[m - 1] for m in dict.fromkeys(markers)]
        texts = [f"{text_of[p][0]}\n{text_of[p][1]}" for p in cited if p in text_of]
        similarity = max((cosine(vector, v) for p in cited for v in by_paper.get(p, [])), default=None)
        if similarity is not None:
            claim = claim_content(row.sentence, names(row))
            similarity = max(
                similarity, text_similarity(claim, [x for p in cited for x in sentences.get(p, [])])
            )
        out.append(
            {
                "no_citation": not cited,
                "missing": missing_facts(row.sentence, texts) if cited else [],
                "similarity": similarity,
            }
        )
    return out


def flagged_at(checks: Sequence[dict[str, Any]], threshold: float) -> list[bool]:
    return [
        c["no_citation"]
        or bool(c["missing"])
        or (c["similarity"] is not None and c["similarity"] < threshold)
        for c in checks
    ]


def evaluate(runner: Any, config: Any) -> dict[str, Any]:
    """The claim check on eval/claims/labelled.jsonl: the similarity threshold calibrated on the
    sentences of dev questions, precision and recall on those of test questions."""
    rows = read_rows(LABELLED)
    services = runner.services(config)
    checks = check_rows(
        rows,
        services.papers,
        lambda texts: [list(runner.embed_model.get_text_embedding(t)) for t in texts],
    )
    dev = [i for i, r in enumerate(rows) if r.set == "dev"]
    test = [i for i, r in enumerate(rows) if r.set == "test"]
    threshold = calibrate_similarity(
        [rows[i] for i in dev],
        [checks[i]["similarity"] for i in dev],
        [bool(checks[i]["missing"]) for i in dev],
        [checks[i]["no_citation"] for i in dev],
    )
    shipped = config.settings(runner.base).claim_min_similarity
    out: dict[str, Any] = {"rows": len(rows), "calibrated": threshold, "shipped": shipped, "sets": {}}
    for name, picked in (("dev", dev), ("test", test)):
        labels = [rows[i].label for i in picked]
        flagged = flagged_at([checks[i] for i in picked], shipped)
        result = score(labels, flagged)
        out["sets"][name] = {
            "n": result.n,
            "unsupported": result.unsupported,
            "flagged": result.flagged,
            "precision": round(result.precision, 4),
            "recall": round(result.recall, 4),
            "by_origin": by_origin([rows[i] for i in picked], flagged),
        }
    return out
