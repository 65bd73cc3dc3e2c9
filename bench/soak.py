"""Soak test: the real service (``python -m app``, bundled LLM) under mixed traffic for a while.

    .venv/bin/python -m bench.soak                  # 5 minutes, 8 workers
    .venv/bin/python -m bench.soak --duration 60    # a quick look

It starts the service itself on 127.0.0.1 and a free port (``PAPERQA_LLM_BACKEND=local``, rate
limit off: every request comes from one address), then ``--workers`` threads send requests until
``--duration`` seconds have passed: 80 % ``GET /search`` and 20 % ``POST /chat`` (not streamed),
with the development questions of ``eval/questions/dev.jsonl``. Everything stays on loopback and
stops by itself.

Counted per route: requests, successes, "busy" (503 because the model's queue was full: the
service's designed refusal, with an extractive answer in ``fallback``), errors (anything else: the
target is 0), latency percentiles; the server's resident memory every ``--sample-every`` seconds.
Writes ``bench/results/soak.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx

from app.client import paced_sync_client
from app.core.settings import PROJECT_ROOT
from bench.common import WORK_DIR, percentile, save
from bench.processes import service as service_process

HOST = "127.0.0.1"  # loopback only
QUESTIONS = PROJECT_ROOT / "eval" / "questions" / "dev.jsonl"
READY_TIMEOUT_S = 600.0
REQUEST_TIMEOUT_S = 180.0


@dataclass
class Tally:
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    outcomes: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    error_samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, route: str, outcome: str, ms: float, note: str = "") -> None:
        with self.lock:
            self.outcomes[route][outcome] += 1
            if outcome != "error":
                self.latencies_ms[route].append(ms)
            elif len(self.error_samples) < 20:
                self.error_samples.append(f"{route}: {note}"[:300])


def load_questions() -> list[str]:
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def classify(response: httpx.Response) -> tuple[str, str]:
    if response.status_code == 200:
        return "ok", ""
    try:
        detail = str(response.json().get("detail", ""))
    except ValueError:
        detail = response.text[:200]
    if response.status_code == 503 and "busy" in detail.lower():
        return "busy", detail
    return "error", f"HTTP {response.status_code}: {detail}"


def worker(
    base: str, deadline: float, questions: list[str], chat_share: float, seed: int, tally: Tally
) -> None:
    rng = random.Random(seed)
    # Paced: a 429 is waited out (Retry-After), as a well-behaved client would.
    with paced_sync_client(base, timeout=REQUEST_TIMEOUT_S) as http:
        while time.monotonic() < deadline:
            question = rng.choice(questions)
            route = "POST /chat" if rng.random() < chat_share else "GET /search"
            started = time.perf_counter()
            try:
                if route == "GET /search":
                    response = http.get("/search", params={"q": question})
                else:
                    response = http.post("/chat", json={"messages": [{"role": "user", "content": question}]})
                outcome, note = classify(response)
            except httpx.HTTPError as exc:
                outcome, note = "error", f"{type(exc).__name__}: {exc}"
            tally.record(route, outcome, (time.perf_counter() - started) * 1000, note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of traffic (default 300)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--chat-share", type=float, default=0.2, help="share of POST /chat (default 0.2)")
    parser.add_argument("--sample-every", type=float, default=10.0, help="RSS sampling period, seconds")
    args = parser.parse_args(argv)

    questions = load_questions()
    subprocess.run([sys.executable, "-m", "ingest", "--if-missing", "--quiet"], cwd=PROJECT_ROOT, check=True)
    env = {"PAPERQA_LLM_BACKEND": "local", "PAPERQA_LOG_LEVEL": "WARNING"}
    server = service_process(env, WORK_DIR / "soak-server.log", timeout_s=READY_TIMEOUT_S)
    with server:
        base = server.url
        ready_s = server.ready_s or 0.0
        print(f"service ready in {ready_s:.1f} s on {base}; {args.workers} workers for {args.duration:.0f} s")
        tally = Tally()
        rss: list[dict[str, float]] = []
        started = time.monotonic()
        deadline = started + args.duration
        threads = [
            threading.Thread(
                target=worker, args=(base, deadline, questions, args.chat_share, seed, tally), daemon=True
            )
            for seed in range(args.workers)
        ]
        for thread in threads:
            thread.start()
        while time.monotonic() < deadline:
            rss.append({"t_s": round(time.monotonic() - started, 1), "rss_mib": server.rss_mib()})
            time.sleep(min(args.sample_every, max(0.0, deadline - time.monotonic())))
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 10)
        elapsed = time.monotonic() - started
        rss.append({"t_s": round(elapsed, 1), "rss_mib": server.rss_mib()})
        alive = (
            server.process is not None
            and server.process.poll() is None
            and httpx.get(f"{base}/health", timeout=10).status_code == 200
        )

    routes = {}
    for route, outcomes in sorted(tally.outcomes.items()):
        latencies = tally.latencies_ms[route]
        routes[route] = {
            "requests": sum(outcomes.values()),
            "ok": outcomes["ok"],
            "busy": outcomes["busy"],
            "errors": outcomes["error"],
            "latency_ms": {f"p{q}": round(percentile(latencies, q), 1) for q in (50, 95, 99)},
        }
    samples = [s["rss_mib"] for s in rss if s["rss_mib"] is not None]
    total = sum(r["requests"] for r in routes.values())
    data = {
        "duration_s": round(elapsed, 1),
        "workers": args.workers,
        "chat_share": args.chat_share,
        "requests": total,
        "requests_per_s": round(total / elapsed, 2),
        "errors": sum(r["errors"] for r in routes.values()),
        "busy": sum(r["busy"] for r in routes.values()),
        "routes": routes,
        "error_samples": tally.error_samples,
        "rss_mib": {
            "start": samples[0],
            "end": samples[-1],
            "max": max(samples),
            "growth": round(samples[-1] - samples[0], 1),
            "samples": rss,
        },
        "service_alive_after": alive,
        "service_ready_s": round(ready_s, 1),
    }
    command = "python -m bench.soak" + (
        "" if argv is None and len(sys.argv) == 1 else " " + " ".join(argv or sys.argv[1:])
    )
    save("soak", data, command)
    print(
        f"{total} requests in {elapsed:.0f} s ({data['requests_per_s']}/s): errors {data['errors']}, busy {data['busy']}"
    )
    for route, r in routes.items():
        lat = r["latency_ms"]
        print(
            f"  {route:12} {r['requests']:6} requests, ok {r['ok']}, busy {r['busy']}, errors {r['errors']}; "
            f"p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms, p99 {lat['p99']:.0f} ms"
        )
    print(
        f"  server RSS {data['rss_mib']['start']:.0f} -> {data['rss_mib']['end']:.0f} MiB "
        f"(max {data['rss_mib']['max']:.0f}); alive after: {alive}"
    )
    for sample in tally.error_samples[:5]:
        print(f"  error: {sample}")
    return 0 if data["errors"] == 0 and alive else 1


if __name__ == "__main__":
    sys.exit(main())
