"""Optional LLM-as-judge: faithfulness and relevance of an answer, 1-5 each.

Off unless ``--judge-url`` and ``--judge-model`` are given; no other metric depends on it. Any
OpenAI-compatible endpoint works (OpenAI, vLLM, Ollama, llama.cpp's server) through the ``openai``
client. A reply that cannot be read gives ``None`` scores and a ``judge_error``, never a crash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

JUDGE_PROMPT = """You grade an answer written from numbered paper abstracts.

Sources:
{sources}

Question: {question}

Answer: {answer}

Rate two things from 1 (worst) to 5 (best):
- faithfulness: every claim in the answer is supported by the sources (5 = all supported);
- relevance: the answer addresses the question (5 = fully).
Reply with JSON only, like {{"faithfulness": 4, "relevance": 5}}."""

_JSON = re.compile(r"\{[^{}]*\}")


def parse_scores(text: str) -> dict[str, int | None]:
    """The first JSON object with 1-5 integer scores; missing or out-of-range scores are None."""
    scores: dict[str, int | None] = {"faithfulness": None, "relevance": None}
    for match in _JSON.finditer(text or ""):
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        for key in scores:
            value = obj.get(key)
            if isinstance(value, int | float) and 1 <= value <= 5:
                scores[key] = int(round(value))
        if any(v is not None for v in scores.values()):
            break
    return scores


class Judge:
    def __init__(
        self, base_url: str, model: str, api_key: str = "", timeout_s: float = 120.0, http_client=None
    ) -> None:
        from openai import AsyncOpenAI

        self.model = model
        self._client = AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            timeout=timeout_s,
            max_retries=2,
            http_client=http_client,
        )

    async def score(self, question: str, passages: Sequence[str], answer: str) -> dict[str, object]:
        sources = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1)) or "(none)"
        prompt = JUDGE_PROMPT.format(sources=sources, question=question, answer=answer)
        try:
            reply = await self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=0.0,
                max_tokens=60,
            )
            text = (reply.choices[0].message.content or "") if reply.choices else ""
        except Exception as exc:  # the judge is optional: record, don't fail the run
            return {"faithfulness": None, "relevance": None, "judge_error": str(exc)[:300]}
        scores: dict[str, object] = dict(parse_scores(text))
        if all(v is None for v in scores.values()):
            scores["judge_error"] = f"unreadable reply: {text[:200]!r}"
        return scores

    async def aclose(self) -> None:
        await self._client.close()
