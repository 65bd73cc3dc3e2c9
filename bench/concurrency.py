"""Concurrent chats on the in-process model while retrieval-only requests keep coming.

``python -m bench.concurrency`` starts the service with the bundled model, sends ``--chats``
chats at once (more than the model's concurrency + queue, so some must be refused as busy), and
meanwhile measures ``GET /search`` latency from one client; then the same search loop with no
chat running, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import httpx

from app.client import paced_client
from bench.common import percentile, save
from bench.processes import service as service_process
from eval.questions import load_questions

COMMAND = "python -m bench.concurrency"


async def search_loop(client: httpx.AsyncClient, queries: list[str], stop: asyncio.Event) -> list[float]:
    times: list[float] = []
    i = 0
    while not stop.is_set():
        t = time.perf_counter()
        response = await client.get("/search", params={"q": queries[i % len(queries)], "k": 5})
        response.raise_for_status()
        times.append((time.perf_counter() - t) * 1000)
        i += 1
    return times


async def chat(client: httpx.AsyncClient, question: str) -> tuple[int, float]:
    t = time.perf_counter()
    response = await client.post("/chat", json={"messages": [{"role": "user", "content": question}]})
    return response.status_code, time.perf_counter() - t


async def run(url: str, chats: int, baseline_s: float) -> dict:
    questions = [q.question for q in load_questions("dev") if q.answerable]
    async with paced_client(url, timeout=600) as client:
        stop = asyncio.Event()
        loop = asyncio.create_task(search_loop(client, questions, stop))
        await asyncio.sleep(baseline_s)
        stop.set()
        idle = await loop

        stop = asyncio.Event()
        loop = asyncio.create_task(search_loop(client, questions, stop))
        outcomes = await asyncio.gather(*(chat(client, q) for q in questions[:chats]))
        stop.set()
        busy = await loop
    codes = [code for code, _ in outcomes]
    return {
        "chats_sent_at_once": chats,
        "chat_status_counts": {str(c): codes.count(c) for c in sorted(set(codes))},
        "chat_seconds_max": round(max(s for _, s in outcomes), 1),
        "search_idle": {
            "n": len(idle),
            "p50_ms": round(percentile(idle, 50), 1),
            "p95_ms": round(percentile(idle, 95), 1),
        },
        "search_during_chats": {
            "n": len(busy),
            "p50_ms": round(percentile(busy, 50), 1),
            "p95_ms": round(percentile(busy, 95), 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--chats", type=int, default=8)
    parser.add_argument("--baseline-seconds", type=float, default=10)
    args = parser.parse_args(argv)
    env = {"PAPERQA_LLM_BACKEND": "local"}
    with service_process(env) as service:
        result = asyncio.run(run(service.url, args.chats, args.baseline_seconds))
    print(result)
    save("concurrency", result, f"{COMMAND} --chats {args.chats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
