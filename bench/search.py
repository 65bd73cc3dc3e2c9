"""Retrieval only over HTTP (``GET /search``): latency percentiles and requests/s under wrk.

``python -m bench.search`` starts the service (embedded defaults), then runs Debian's ``wrk`` at
concurrency 1, 8 and 32 for ``--seconds`` each, rotating over the dev questions as queries (a Lua
script), and reads wrk's latency distribution.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

from bench.common import save
from bench.processes import service as service_process
from eval.questions import load_questions

COMMAND = "python -m bench.search"
LUA = """
local paths = {%s}
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"p50_ms\\": %%.2f, \\"p95_ms\\": %%.2f, \\"p99_ms\\": %%.2f, \\"mean_ms\\": %%.2f, \\"requests\\": %%d, \\"errors\\": %%d, \\"non2xx\\": %%d}\\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


def run_wrk(url: str, script: str, connections: int, seconds: int) -> dict:
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-s",
            script,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stats = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    stats["requests_per_s"] = float(rps.group(1)) if rps else None
    stats["concurrency"] = connections
    return stats


def in_process(backend: str, queries: list[str]) -> dict:
    """Where a search's time goes without HTTP: median ms of the query embedding and of
    ``PaperRetriever.search`` per mode (every mode also runs the dense query, for the relevance floor)."""
    import statistics
    import time

    from app.core import offline

    offline.configure()
    from app.core.embeddings import load_embed_model
    from app.core.settings import Settings
    from app.core.store import get_collections, make_client
    from app.retrieval.search import PaperRetriever

    settings = Settings(embed_backend=backend)
    model = load_embed_model(settings)
    retriever = PaperRetriever(
        settings, model, get_collections(make_client(settings), settings.collection)[0]
    )
    for query in queries[:5]:
        retriever.search([query])

    def median_ms(call) -> float:
        times = []
        for query in queries:
            started = time.perf_counter()
            call(query)
            times.append((time.perf_counter() - started) * 1000)
        return round(statistics.median(times), 2)

    out = {"embed_query_ms": median_ms(model.get_query_embedding)}
    for mode in ("dense", "bm25", "hybrid"):
        out[f"search_{mode}_ms"] = median_ms(lambda q, m=mode: retriever.search([q], mode=m))

    # The coverage decision's own share of a hybrid search: name matching, the lexical evidence
    # of the top papers, the closest paper's lead (dense_gap) and the decision
    # (app.retrieval.coverage), on the papers search found.
    from app.retrieval.coverage import CoverageModel, coverage_of
    from app.retrieval.fusion import dense_gap

    model_of = CoverageModel.from_settings(settings)
    found = {q: retriever.search([q]) for q in queries}

    def decision(query: str) -> None:
        retriever.named_papers([query])
        retriever.lexical.term_evidence(query, [h.paper_id for h in found[query].hits[:3]])
        dense_gap({h.paper_id: h.best_dense or 0.0 for h in found[query].hits})
        coverage_of(found[query], model_of)

    out["coverage_decision_ms"] = median_ms(decision)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--backend", default="onnx-int8", help="embedding backend of the service")
    parser.add_argument("--url", help="an already running service instead of starting one")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("error: wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    paths = ["/search?" + urllib.parse.urlencode({"q": q.question, "k": 5}) for q in load_questions("dev")]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(LUA % ", ".join(json.dumps(p) for p in paths))
        script = handle.name
    env = {"PAPERQA_EMBED_BACKEND": args.backend, "PAPERQA_LLM_BACKEND": "extractive"}
    results = []
    breakdown = None if args.url else in_process(args.backend, [q.question for q in load_questions("dev")])
    if breakdown:
        print(breakdown)
    if args.url:
        for c in (1, 8, 32):
            results.append(run_wrk(args.url, script, c, args.seconds))
            print(results[-1])
    else:
        with service_process(env) as service:
            run_wrk(service.url, script, 1, 3)  # warm-up
            for c in (1, 8, 32):
                results.append(run_wrk(service.url, script, c, args.seconds))
                print(results[-1])
            rss = round(service.rss_mib())
        results.append({"service_rss_mib_after": rss})
    save(
        f"search-{args.backend}",
        {
            "embed_backend": args.backend,
            "queries": len(paths),
            "runs": results,
            "in_process_median": breakdown,
        },
        f"{COMMAND} --seconds {args.seconds} --backend {args.backend}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
