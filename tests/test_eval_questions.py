"""The question sets are valid and match the bundled corpus (parsed as ingestion parses it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.core.records import normalize_title
from eval.questions import (
    SETS,
    TYPES,
    QuestionSetError,
    corpus_abstracts,
    corpus_titles,
    load_questions,
    missing_gold_titles,
    parse_question,
    select,
)


@pytest.fixture(scope="module")
def titles(corpus_dir: Path) -> dict[str, str]:
    return corpus_titles([corpus_dir])


@pytest.fixture(scope="module")
def question_sets():
    return {name: load_questions(name) for name in SETS}


def test_bundled_corpus_has_the_documented_papers(titles: dict[str, str]) -> None:
    assert len(titles) == 586


@pytest.mark.parametrize("name", SETS)
def test_every_gold_title_is_a_paper_of_the_corpus(name: str, question_sets, titles) -> None:
    assert missing_gold_titles(question_sets[name], titles) == []


@pytest.mark.parametrize("name", SETS)
def test_key_facts_occur_in_a_gold_abstract(name: str, question_sets, corpus_dir: Path) -> None:
    abstracts = corpus_abstracts([corpus_dir])
    for q in question_sets[name]:
        gold_text = " ".join(abstracts[normalize_title(t)] for t in q.gold_titles).casefold()
        for fact in q.key_facts:
            assert fact.casefold() in gold_text, f"{q.id}: key fact {fact!r} not in a gold abstract"


def test_ids_are_unique_and_dev_and_test_share_none(question_sets) -> None:
    dev = [q.id for q in question_sets["dev"]]
    test = [q.id for q in question_sets["test"]]
    extra = [q.id for q in question_sets["dev-coverage"]]
    answers = [q.id for q in question_sets["dev-answers"]]
    assert len(dev) == len(set(dev)) == 95
    assert len(test) == len(set(test)) == 95
    assert len(extra) == len(set(extra)) == 68
    assert len(answers) == len(set(answers)) == 60
    assert not set(dev) & set(test) and not set(extra) & (set(dev) | set(test))
    assert not set(answers) & (set(dev) | set(test) | set(extra))
    followups = [q.id for q in question_sets["dev-followups"]]
    assert len(followups) == len(set(followups)) == 30
    assert not set(followups) & (set(dev) | set(test) | set(extra) | set(answers))
    assert all(q.type == "followup" and len(q.history) == 2 for q in question_sets["dev-followups"])
    details = [q.id for q in question_sets["dev-details"]]
    assert len(details) == len(set(details)) == 40
    assert all(q.type == "detail" and q.key_facts for q in question_sets["dev-details"])
    assert not set(details) & (set(dev) | set(test) | set(extra) | set(answers) | set(followups))
    later = [q.id for q in question_sets["dev-followups2"]]
    assert len(later) == len(set(later)) == 36
    assert not set(later) & (set(dev) | set(test) | set(extra) | set(answers) | set(followups) | set(details))
    for q in question_sets["dev-followups2"]:  # answers written without citation markers
        assert q.type == "followup" and len(q.history) == 2
        assert not re.search(r"\[\d+\]", q.history[1]["content"])
    assert len(load_questions("dev+dev-coverage+dev-answers")) == 95 + 68 + 60


def test_joined_sets_refuse_a_shared_id(tmp_path: Path) -> None:
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps(GOOD) + "\n", encoding="utf-8")
    with pytest.raises(QuestionSetError, match="duplicate id 'x-1' across the sets"):
        load_questions(f"{one}+{one}")


def test_the_coverage_tuning_set_mix(question_sets) -> None:
    """dev-coverage: out-of-scope questions (mostly near-topic) and answerable ones asked the same way."""
    extra = question_sets["dev-coverage"]
    counts = {t: sum(q.type == t for q in extra) for t in TYPES if any(q.type == t for q in extra)}
    assert counts == {"lookup": 21, "multi": 9, "out_of_scope": 38}
    assert sum(bool(q.near_topic) for q in extra if q.type == "out_of_scope") == 30


def test_the_answers_tuning_set_mix(question_sets) -> None:
    """dev-answers: detail questions with key facts, lookups, "which papers" questions."""
    extra = question_sets["dev-answers"]
    counts = {t: sum(q.type == t for q in extra) for t in TYPES if any(q.type == t for q in extra)}
    assert counts == {"detail": 30, "lookup": 18, "multi": 12}
    assert all(q.key_facts for q in extra if q.type == "detail")
    assert all(2 <= len(q.gold_titles) <= 6 for q in extra if q.type == "multi")


@pytest.mark.parametrize("name", ["dev", "test"])
def test_type_mix_is_as_documented(name: str, question_sets) -> None:
    counts = {t: sum(q.type == t for q in question_sets[name]) for t in TYPES}
    assert counts == {
        "lookup": 12,
        "detail": 12,
        "multi": 8,
        "out_of_scope": 21,
        "keyword": 8,
        "followup": 7,
        "named": 27,
    }
    oos = [q for q in question_sets[name] if q.type == "out_of_scope"]
    assert sum(bool(q.near_topic) for q in oos) == 14


def test_named_questions_name_their_gold_papers(question_sets) -> None:
    """Every named question's gold papers are those whose titles give the name (up to case,
    hyphens and spaces), and no paper is named in both dev and test."""
    from app.core.names import QUESTION_WORDS, name_key, question_keys

    named = {name: [q for q in question_sets[name] if q.type == "named"] for name in SETS}
    for questions in named.values():
        for q in questions:
            keys = [k for k in question_keys(q.question) if len(k) >= 3 and k not in QUESTION_WORDS]
            for title in q.gold_titles:
                assert any(k in name_key(title) for k in keys), (q.id, q.question, title)
    dev = {t for q in named["dev"] for t in q.gold_titles if len(q.gold_titles) == 1}
    test = {t for q in named["test"] for t in q.gold_titles if len(q.gold_titles) == 1}
    assert not dev & test


def test_followups_end_with_the_question_after_their_history(question_sets) -> None:
    for q in question_sets["dev"]:
        assert q.messages[-1] == {"role": "user", "content": q.question}
        assert len(q.messages) == len(q.history) + 1


GOOD = {"id": "x-1", "type": "lookup", "question": "q?", "gold_titles": ["T"], "key_facts": [], "history": []}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "nope"}, "unknown type"),
        ({"question": "  "}, "empty question"),
        ({"gold_titles": []}, "needs gold titles"),
        ({"type": "out_of_scope"}, "no gold titles"),
        ({"type": "detail"}, "needs key facts"),
        ({"history": [{"role": "user", "content": "a"}]}, "history"),
        ({"type": "followup"}, "history"),
        ({"gold_titles": "T"}, "must be a list"),
        ({"type": "out_of_scope", "gold_titles": []}, "near_topic"),
        ({"type": "named"}, "phrasing"),
        ({"phrasing": "bare"}, "named questions only"),
    ],
)
def test_invalid_questions_are_rejected(change: dict, message: str) -> None:
    with pytest.raises(QuestionSetError, match=message):
        parse_question({**GOOD, **change}, "set.jsonl:1")


def test_missing_field_is_named() -> None:
    obj = dict(GOOD)
    del obj["key_facts"]
    with pytest.raises(QuestionSetError, match="key_facts"):
        parse_question(obj, "set.jsonl:1")


def test_duplicate_ids_in_a_file_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n", encoding="utf-8")
    with pytest.raises(QuestionSetError, match="duplicate id"):
        load_questions(path)


def test_missing_gold_titles_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps({**GOOD, "gold_titles": ["Known", "Unknown Paper"]}) + "\n", encoding="utf-8")
    questions = load_questions(path)
    assert missing_gold_titles(questions, {normalize_title("known"): "Known"}) == ["x-1: Unknown Paper"]


def test_select(question_sets) -> None:
    dev = question_sets["dev"]
    assert [q.id for q in select(dev, limit=2)] == ["dev-001", "dev-002"]
    assert {q.type for q in select(dev, types=["keyword"])} == {"keyword"}
    assert [q.id for q in select(dev, ids=["dev-050", "dev-003"])] == ["dev-003", "dev-050"]
