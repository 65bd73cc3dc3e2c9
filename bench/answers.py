"""Answers with the embedded model (SmolLM2-135M in process): time to first streamed token,
tokens per second, total time; p50/p95 over the dev questions, for each answer strategy (extract,
compose, generate; "default" is the shipped one) and a few settings that decide where the time
goes (answer length, threads).

``python -m bench.answers`` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from app.answering.types import DeltaEvent, DoneEvent
from app.core import offline
from app.core.settings import Settings
from bench.common import percentile, save
from eval.questions import load_questions

COMMAND = "python -m bench.answers"
VARIANTS = {
    "default": {},
    "extract": {"answer_strategy": "extract"},
    "compose": {"answer_strategy": "compose"},
    "generate": {"answer_strategy": "generate"},
    "generate-threads-1": {"answer_strategy": "generate", "llm_threads": 1},
    "generate-max-tokens-120": {"answer_strategy": "generate", "max_answer_tokens": 120},
}


async def measure(engine, questions) -> dict:
    first, total, rates, prompt_tokens, completion_tokens = [], [], [], [], []
    for question in questions:
        started = time.perf_counter()
        first_at = None
        result = None
        async for event in engine.events(question.messages):
            if isinstance(event, DeltaEvent) and first_at is None:
                first_at = time.perf_counter() - started
            elif isinstance(event, DoneEvent):
                result = event.result
        elapsed = time.perf_counter() - started
        if result is None or result.refused:
            continue
        total.append(elapsed)
        if first_at is not None:
            first.append(first_at)
        # Tokens the model wrote over the whole answering step (its prompts' prefill included):
        # sentences are released only once checked, so the first delta says nothing of decoding.
        generate_s = result.timings.generate_ms / 1000
        if result.usage.completion_tokens and generate_s > 0:
            rates.append(result.usage.completion_tokens / generate_s)
        prompt_tokens.append(result.usage.prompt_tokens)
        completion_tokens.append(result.usage.completion_tokens)

    def summary(values: list[float]) -> dict:
        if not values:
            return {"p50": None, "p95": None, "n": 0}
        return {
            "p50": round(percentile(values, 50), 2),
            "p95": round(percentile(values, 95), 2),
            "n": len(values),
        }

    return {
        "first_token_s": summary(first),
        "total_s": summary(total),
        "decode_tokens_per_s": summary(rates),
        "prompt_tokens_mean": round(sum(prompt_tokens) / max(1, len(prompt_tokens))),
        "completion_tokens_mean": round(sum(completion_tokens) / max(1, len(completion_tokens))),
    }


def main(argv: list[str] | None = None) -> int:
    offline.configure()  # before chromadb / transformers are first imported
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--questions", type=int, default=20, help="answerable dev questions per variant")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args(argv)
    from app.answering.llm import LocalBackend
    from app.core.embeddings import load_embed_model
    from app.services import build_services

    base = Settings(llm_backend="local", embed_backend="onnx-int8")
    embed_model = load_embed_model(base)
    questions = [q for q in load_questions("dev") if q.answerable][: args.questions]
    results = {}
    for name in args.variants:
        settings = base.model_copy(update=VARIANTS[name])
        backend = LocalBackend(settings)
        services = build_services(settings, embed_model=embed_model, backend=backend)
        results[name] = {"settings": VARIANTS[name], **asyncio.run(measure(services.engine, questions))}
        asyncio.run(services.aclose())
        print(name, results[name])
    save(
        "answers",
        {"questions": len(questions), "variants": results},
        f"{COMMAND} --questions {args.questions}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
