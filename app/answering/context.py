"""What the model is shown: numbered sources within a token budget, and the chat messages.

Pure functions (tiktoken counts the tokens), tested without a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from app.answering.evidence import PaperEvidence
from app.answering.prompts import Prompts
from app.answering.types import Citation, EvidenceSpan, Source
from app.core import offline
from app.retrieval.queries import Turn
from app.retrieval.types import PaperHit

HISTORY_CHARS = 400  # each earlier turn shown to the model is cut to this


@lru_cache(maxsize=1)
def _encoding() -> Any:
    offline.configure()  # tiktoken reads its encodings from the copy llama-index-core ships
    import tiktoken

    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


def truncate_tokens(text: str, budget: int) -> str:
    tokens = _encoding().encode(text, disallowed_special=())
    if len(tokens) <= budget:
        return text
    return str(_encoding().decode(tokens[: max(budget, 0)])).rstrip() + " …"


def sources_from_evidence(
    evidence: Sequence[PaperEvidence], hits: Sequence[PaperHit], budget: int = 10_000
) -> list[Source]:
    """The retrieved papers, numbered, each with its evidence: the passage the model is shown, cut
    so that all of them fit ``budget`` tiktoken tokens (an equal share each)."""
    share = budget // max(len(evidence), 1)
    return [
        Source(
            n=n,
            paper_id=e.paper_id,
            title=e.title,
            passage=truncate_tokens(
                " ".join(s.text for s in e.evidence) or (hit.passages[0].text if hit.passages else ""),
                max(share - count_tokens(f"[{n}] {e.title}: "), 24),
            ),
            score=hit.score,
            similarity=hit.best_dense,
            url=hit.url,
            evidence=[EvidenceSpan(text=s.text, start=s.start, end=s.end) for s in e.evidence],
        )
        for n, (e, hit) in enumerate(zip(evidence, hits, strict=True), start=1)
    ]


def render_sources(sources: Sequence[Source]) -> str:
    return "\n\n".join(f"[{s.n}] {s.title}: {s.passage}" for s in sources)


def render_history(messages: Sequence[Turn]) -> str:
    return "\n".join(
        f"{m['role']}: {m['content'][:HISTORY_CHARS]}" for m in messages if m["role"] != "system"
    )


def build_messages(prompts: Prompts, sources: Sequence[Source], messages: Sequence[Turn]) -> list[Turn]:
    history: list[Turn] = [
        {"role": m["role"], "content": m["content"][:HISTORY_CHARS]}
        for m in messages[:-1][-2:]
        if m["role"] in ("user", "assistant")
    ]
    user = prompts.answer.format(sources=render_sources(sources), question=messages[-1]["content"].strip())
    return [{"role": "system", "content": prompts.system}, *history, {"role": "user", "content": user}]


def make_citations(sources: Sequence[Source], cited: Sequence[int]) -> list[Citation]:
    return [
        Citation(
            marker=marker,
            paper_id=sources[index].paper_id,
            title=sources[index].title,
            passage=sources[index].passage,
            score=sources[index].score,
            url=sources[index].url,
            evidence=sources[index].evidence,
        )
        for marker, index in enumerate(cited, start=1)
    ]
