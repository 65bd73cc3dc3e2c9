"""The question sets (``eval/questions/{dev,test}.jsonl``): load, validate, and check against a corpus."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app.core.errors import PaperQAError
from app.core.records import normalize_title
from ingest.parsers import corpus_files, read_file
from ingest.pipeline import IngestSummary, dedupe

QUESTIONS_DIR = Path(__file__).resolve().parent / "questions"
# dev-coverage, dev-answers, dev-details, dev-followups, dev-followups2: more tuning questions (the
# coverage decision; the evidence of answers, and of detail questions; follow-up questions, with
# and without citation markers in the answer before them)
SETS = ("dev", "test", "dev-coverage", "dev-answers", "dev-details", "dev-followups", "dev-followups2")
QuestionType = Literal["lookup", "detail", "multi", "out_of_scope", "keyword", "followup", "named"]
TYPES: tuple[str, ...] = ("lookup", "detail", "multi", "out_of_scope", "keyword", "followup", "named")
PHRASINGS = ("what_is", "tell_me", "bare", "how_does", "which_proposes", "what_does", "problem")
VARIANTS = ("exact", "lower", "hyphen_space_digit")


class QuestionSetError(PaperQAError, ValueError):
    """A question set does not follow the format of ``eval/questions/README.md``."""


@dataclass(frozen=True)
class Question:
    id: str
    type: str
    question: str
    gold_titles: tuple[str, ...] = ()
    key_facts: tuple[str, ...] = ()
    history: tuple[dict[str, str], ...] = field(default_factory=tuple)
    near_topic: bool | None = None  # out_of_scope only: a transformer topic the corpus lacks
    phrasing: str | None = None  # named only: how the question asks (PHRASINGS)
    variant: str | None = None  # named only: how the name is written against the title (VARIANTS)

    @property
    def answerable(self) -> bool:
        return self.type != "out_of_scope"

    @property
    def messages(self) -> list[dict[str, str]]:
        """The conversation as the service gets it: earlier turns, then the question."""
        return [
            *({"role": m["role"], "content": m["content"]} for m in self.history),
            {"role": "user", "content": self.question},
        ]


def set_path(name_or_path: str | Path) -> Path:
    """``dev`` / ``test`` name the bundled sets; anything else is a path."""
    if str(name_or_path) in SETS:
        return QUESTIONS_DIR / f"{name_or_path}.jsonl"
    return Path(name_or_path)


def parse_question(obj: object, where: str) -> Question:
    """One JSON object to a :class:`Question`, checking the per-type rules."""
    if not isinstance(obj, dict):
        raise QuestionSetError(f"{where}: expected a JSON object")
    missing = [k for k in ("id", "type", "question", "gold_titles", "key_facts", "history") if k not in obj]
    if missing:
        raise QuestionSetError(f"{where}: missing field(s) {', '.join(missing)}")
    qid, qtype, text = obj["id"], obj["type"], obj["question"]
    if not isinstance(qid, str) or not qid.strip():
        raise QuestionSetError(f"{where}: id must be a non-empty string")
    if qtype not in TYPES:
        raise QuestionSetError(f"{where} ({qid}): unknown type {qtype!r}; expected one of {TYPES}")
    if not isinstance(text, str) or not text.strip():
        raise QuestionSetError(f"{where} ({qid}): empty question")
    for key in ("gold_titles", "key_facts", "history"):
        if not isinstance(obj[key], list):
            raise QuestionSetError(f"{where} ({qid}): {key} must be a list")
    gold, facts, history = obj["gold_titles"], obj["key_facts"], obj["history"]
    if not all(isinstance(t, str) and t.strip() for t in [*gold, *facts]):
        raise QuestionSetError(f"{where} ({qid}): gold_titles and key_facts must be non-empty strings")
    if qtype == "out_of_scope" and gold:
        raise QuestionSetError(f"{where} ({qid}): out_of_scope questions have no gold titles")
    if qtype != "out_of_scope" and not gold:
        raise QuestionSetError(f"{where} ({qid}): a {qtype} question needs gold titles")
    if qtype == "detail" and not facts:
        raise QuestionSetError(f"{where} ({qid}): a detail question needs key facts")
    if (qtype == "followup") != bool(history):
        raise QuestionSetError(f"{where} ({qid}): history is required for followup and only there")
    near_topic, phrasing, variant = obj.get("near_topic"), obj.get("phrasing"), obj.get("variant")
    if (qtype == "out_of_scope") != isinstance(near_topic, bool):
        raise QuestionSetError(
            f"{where} ({qid}): near_topic (true/false) is required for out_of_scope and only there"
        )
    if qtype == "named" and (phrasing not in PHRASINGS or variant not in VARIANTS):
        raise QuestionSetError(
            f"{where} ({qid}): a named question needs phrasing in {PHRASINGS} and variant in {VARIANTS}"
        )
    if qtype != "named" and (phrasing is not None or variant is not None):
        raise QuestionSetError(f"{where} ({qid}): phrasing and variant are for named questions only")
    for turn in history:
        if (
            not isinstance(turn, dict)
            or turn.get("role") not in ("user", "assistant")
            or not isinstance(turn.get("content"), str)
        ):
            raise QuestionSetError(f"{where} ({qid}): history turns are {{role: user|assistant, content}}")
    return Question(
        id=qid,
        type=qtype,
        question=text,
        gold_titles=tuple(gold),
        key_facts=tuple(facts),
        history=tuple({"role": t["role"], "content": t["content"]} for t in history),
        near_topic=near_topic,
        phrasing=phrasing,
        variant=variant,
    )


def load_questions(name_or_path: str | Path) -> list[Question]:
    """Load and validate a question set; ids must be unique within it. ``a+b`` joins sets
    (``dev+dev-coverage``: every tuning question), ids unique across them."""
    parts = str(name_or_path).split("+") if str(name_or_path) not in SETS else [str(name_or_path)]
    if len(parts) > 1:
        joined = [q for part in parts for q in load_questions(part)]
        seen: set[str] = set()
        for question in joined:
            if question.id in seen:
                raise QuestionSetError(f"{name_or_path}: duplicate id {question.id!r} across the sets")
            seen.add(question.id)
        return joined
    path = set_path(name_or_path)
    if not path.is_file():
        raise QuestionSetError(f"{path}: no such question set")
    questions: list[Question] = []
    seen_ids: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QuestionSetError(f"{where}: malformed JSON ({exc.msg})") from exc
        question = parse_question(obj, where)
        if question.id in seen_ids:
            raise QuestionSetError(f"{where}: duplicate id {question.id!r}")
        seen_ids.add(question.id)
        questions.append(question)
    if not questions:
        raise QuestionSetError(f"{path}: no questions")
    return questions


def select(
    questions: Sequence[Question],
    ids: Iterable[str] | None = None,
    types: Iterable[str] | None = None,
    limit: int | None = None,
) -> list[Question]:
    """A subset by id and/or type (in file order), then the first ``limit``."""
    wanted_ids, wanted_types = set(ids or ()), set(types or ())
    chosen = [
        q
        for q in questions
        if (not wanted_ids or q.id in wanted_ids) and (not wanted_types or q.type in wanted_types)
    ]
    return chosen[:limit] if limit else chosen


def corpus_titles(paths: Sequence[Path]) -> dict[str, str]:
    """Every distinct paper of a corpus: normalised title -> title, parsed as ingestion does."""
    summary = IngestSummary()
    records = (record for path in corpus_files(paths) for record in read_file(path))
    return {normalize_title(paper.title): paper.title for paper in dedupe(records, summary)}


def corpus_abstracts(paths: Sequence[Path]) -> dict[str, str]:
    """Normalised title -> abstract (first entry wins, as in ingestion)."""
    summary = IngestSummary()
    records = (record for path in corpus_files(paths) for record in read_file(path))
    return {normalize_title(paper.title): paper.abstract for paper in dedupe(records, summary)}


def missing_gold_titles(questions: Iterable[Question], titles: dict[str, str]) -> list[str]:
    """``"id: title"`` for each gold title that is not a paper of the corpus."""
    return [
        f"{q.id}: {title}"
        for q in questions
        for title in q.gold_titles
        if normalize_title(title) not in titles
    ]
