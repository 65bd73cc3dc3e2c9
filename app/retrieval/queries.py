"""The retrieval queries of a conversation, and their fusion weights. Pure functions.

A follow-up is searched twice: with its raw text and with the previous user turn joined to it;
retrieval fuses both rankings, so a follow-up can never lose what its raw text finds. Joined to
the answer before it, it is searched once more, for ranking only (:func:`answer_query`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypedDict

from app.core.text import is_blank, terms


class Turn(TypedDict):
    """One message of a conversation (also the shape of an LLM chat message)."""

    role: Literal["system", "user", "assistant"] | str
    content: str


def standalone_queries(messages: Sequence[Turn]) -> list[str]:
    """The raw last question first, then (for a follow-up) the previous user turn joined to it."""
    question = messages[-1]["content"].strip()
    earlier = [m["content"].strip() for m in messages[:-1] if m["role"] == "user"]
    if not earlier:
        return [question]
    return [question, f"{earlier[-1]} {question}"]


def answer_query(messages: Sequence[Turn]) -> str | None:
    """A follow-up joined to the answer before it (None without one): what "it", "that" or
    "those" stand for is written there, the paper's name and its words, not in the question
    before. The question comes first (the embedder reads only its first 256 wordpieces)."""
    question = messages[-1]["content"].strip()
    answers = [m["content"].strip() for m in messages[:-1] if m["role"] == "assistant"]
    if not answers or not answers[-1] or not question:
        return None
    return f"{question} {answers[-1]}"


def query_weights(queries: Sequence[str], raw_weight: float, full_weight_terms: int) -> list[float]:
    """Fusion weights of :func:`standalone_queries`: alone, the question counts fully; in a
    follow-up its raw text counts ``raw_weight``, scaled down when it says little by itself.

    A vague follow-up ("What does it mask?": one content word) leans on its context: with fewer
    than ``full_weight_terms`` content words its raw rankings count proportionally less, so they
    cannot outvote the standalone question that names the topic.
    """
    if len(queries) == 1:
        return [1.0]
    own = len(terms(queries[0]))
    share = 1.0 if full_weight_terms <= 0 else min(1.0, own / full_weight_terms)
    return [raw_weight * share] + [1.0] * (len(queries) - 1)


def question_problem(roles_and_contents: Sequence[tuple[str, str]]) -> str | None:
    """Why a conversation has no question to answer, or None. The question is the last user
    message; every user message must be non-blank (:func:`app.core.text.is_blank`); messages after
    the last user message are ignored (:func:`up_to_the_question`). The one statement of that
    rule: the HTTP schemas and the MCP tools call it, and the OpenAPI schema states it."""
    if not roles_and_contents:
        return "the conversation is empty"
    users = [i for i, (role, _) in enumerate(roles_and_contents) if role == "user"]
    if not users:
        return "the conversation has no user message (the question is the last user message)"
    for index in users:
        if is_blank(roles_and_contents[index][1]):
            which = "the question (the last user message)" if index == users[-1] else f"messages[{index}]"
            return f"{which} is empty: a user message needs some text"
    return None


def up_to_the_question(messages: Sequence[Turn]) -> list[Turn]:
    """The conversation up to its question (the last user message); what follows is ignored."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=len(messages) - 1)
    return list(messages[: last + 1])
