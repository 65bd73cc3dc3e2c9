"""Follow-ups into retrieval queries: the service's one condensing rule, public for the evaluation.

``concat`` (default): the raw question, then the previous user turn joined to it
(:func:`app.retrieval.queries.standalone_queries`); ``llm``: the raw question, then the model's
rewrite (concat when the model fails); ``off``: the raw question only. Besides, in ``concat``
and ``llm``, a follow-up joined to the answer before it ranks, without counting towards coverage
(:func:`context_for`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from app.answering.context import render_history
from app.answering.followups import chooses_among
from app.answering.llm import ChatBackend, Usage
from app.answering.prompts import Prompts
from app.core.errors import LLMError
from app.core.settings import Settings
from app.retrieval.queries import Turn, answer_query, query_weights, standalone_queries


async def condense(
    messages: Sequence[Turn], settings: Settings, backend: ChatBackend | None, prompts: Prompts
) -> list[str]:
    queries = standalone_queries(messages)
    if settings.condense_mode == "off":
        return queries[:1]
    if len(queries) == 1 or settings.condense_mode == "concat" or backend is None:
        return queries
    prompt = prompts.condense.format(
        history=render_history(messages[:-1]), question=messages[-1]["content"].strip()
    )
    try:
        async with asyncio.timeout(settings.llm_timeout_s):
            rewritten = await backend.complete([{"role": "user", "content": prompt}], Usage())
    except (LLMError, TimeoutError):
        return queries
    rewritten = rewritten.strip().splitlines()[0].strip() if rewritten.strip() else ""
    # The raw question stays first: the rewrite can add to retrieval, never replace it.
    return [queries[0], rewritten] if rewritten else queries


def weights_for(queries: Sequence[str], settings: Settings) -> list[float]:
    """The fusion weights of ``queries`` under ``settings``."""
    return query_weights(queries, settings.followup_raw_weight, settings.followup_full_weight_terms)


def context_for(messages: Sequence[Turn], settings: Settings) -> list[tuple[str, float]]:
    """The ranking-only queries of a conversation (``(query, weight)``): a follow-up joined to the
    answer before it, weighted ``followup_answer_weight`` (0 turns it off). Not for a choice among
    the papers that answer discussed ("Which of them ...?"): it describes them all, and would
    only favour the one it said most about."""
    query = answer_query(messages)
    if query is None or settings.followup_answer_weight <= 0 or settings.condense_mode == "off":
        return []
    if chooses_among(messages[-1]["content"]):
        return []
    return [(query, settings.followup_answer_weight)]
