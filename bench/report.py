"""Render every ``bench/results/*.json`` into docs/performance.md (``python -m bench report``).

Only measured numbers appear, each table with the command that produced it and the machine it ran
on; targets are compared with what was measured, and a missing result is said to be missing.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from app.core.settings import PROJECT_ROOT
from bench.common import RESULTS_DIR, describe_machine

DOC = PROJECT_ROOT / "docs" / "performance.md"
NOTES = PROJECT_ROOT / "bench" / "notes.md"
# Written from python -m bench.ray_ingest's runs (bench/results/ray_ingest.json) with the arithmetic.
RAY_NOTES = PROJECT_ROOT / "bench" / "ray_notes.md"


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def provenance(result: dict[str, Any]) -> str:
    m = result["machine"]
    return (
        f"Command: `{result['command']}` — measured {result['measured_at']} on {m['cores']} cores, "
        f"{m['memory_gib']} GiB, load average {m['load_average_at_start']:.1f} at start. "
        + describe_machine(m)
        + "."
    )


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(value: float | None, target: float, lower_is_better: bool = True) -> str:
    if value is None:
        return "not measured"
    met = value <= target if lower_is_better else value >= target
    return "met" if met else "**not met**"


def section_ingest(r: dict[str, Any]) -> str:
    rows = [
        [
            v["variant"],
            v["ingest_s"],
            ", ".join(map(str, v.get("runs_ingest_s", []))),
            v["model_load_s"],
            v["papers_per_s"],
            v.get("speedup_vs_plain"),
            v["chunks"],
            v["chunks_over_window"],
            v["peak_rss_mib"],
            v.get("dev_hit@5", "–"),
            v.get("dev_mrr@10", "–"),
        ]
        for v in r["variants"]
    ]
    best = max(
        (v for v in r["variants"] if v["variant"] != "plain"), key=lambda v: v.get("speedup_vs_plain", 0)
    )
    re = r["reingest_unchanged"]
    return "\n\n".join(
        [
            "## Ingestion of the bundled corpus (586 papers)",
            provenance(r),
            table(
                [
                    "variant",
                    "ingest s",
                    "runs s",
                    "model load s",
                    "papers/s",
                    "× plain",
                    "chunks",
                    "chunks over 256 wordpieces (truncated)",
                    "peak RSS MiB",
                    "dev hit@5",
                    "dev MRR@10",
                ],
                rows,
            ),
            "`plain` is LlamaIndex's `VectorStoreIndex.from_documents` with the same MiniLM "
            "(`HuggingFaceEmbedding` on torch, its defaults: batch 10, the model's 256-wordpiece window) and "
            "Chroma, default 1024-token chunks. Ingest seconds exclude model loading (its own column) and are "
            "the best of the runs listed; each variant runs in a fresh process. `ours` is `ingest.pipeline` "
            "with the shipped settings: chunks that fit the window (title embedded with every chunk), so it "
            "embeds more text and truncates nothing.",
            f"Target ≥ 2× the plain pipeline with no truncation: best {best['variant']} at "
            f"{best.get('speedup_vs_plain')}× — {verdict(best.get('speedup_vs_plain'), 2.0, lower_is_better=False)}.",
            f"Re-ingesting the unchanged corpus (whole `python -m ingest` command, process start included): "
            f"{re['command_wall_s']} s; pipeline: `{re['summary']}`. Target under 2 s — "
            f"{verdict(re['command_wall_s'], 2.0)}.",
        ]
    )


def section_embedder(r: dict[str, Any]) -> str:
    rows = [
        [v["variant"], v["seconds"], v["wordpieces_per_s"], v["cos_to_torch_mean"], v["cos_to_torch_min"]]
        for v in r["variants"]
    ]
    return "\n\n".join(
        [
            "## Where ingestion time goes: the embedder's runtime",
            provenance(r),
            f"The bundled corpus chunked with the shipped settings (chunk size {r['chunk_size']}, overlap "
            f"{r['chunk_overlap']}): {r['chunks']} chunks, {r['wordpieces']} wordpieces. Chunking took "
            f"{r['chunking_s']} s; writing the chunks to a fresh embedded Chroma {r['chroma_write_s']} s.",
            table(
                ["variant", "embed all chunks s", "wordpieces/s", "cosine to torch (mean)", "cosine (min)"],
                rows,
            ),
            "`sdpa-export` / `eager-export`: which attention code of transformers the ONNX graph was traced "
            "from; `bN`: texts per forward pass (sorted by length, so little padding).",
        ]
    )


def section_startup(r: dict[str, Any]) -> str:
    rows = [
        [backend, v["median_s"], v["max_s"], ", ".join(map(str, v["ready_s"])), v["rss_mib_when_ready"]]
        for backend, v in r["backends"].items()
    ]
    worst = max(v["max_s"] for v in r["backends"].values())
    return "\n\n".join(
        [
            "## Start-up (process start to /health ready, index already built, local LLM loaded)",
            provenance(r),
            table(["embedding backend", "median s", "max s", "runs", "RSS MiB when ready"], rows),
            f"Target under 10 s: worst run {worst} s — {verdict(worst, 10.0)}.",
        ]
    )


def section_search(r: dict[str, Any]) -> str:
    runs = [x for x in r["runs"] if "concurrency" in x]
    rows = [
        [
            x["concurrency"],
            x["p50_ms"],
            x["p95_ms"],
            x["p99_ms"],
            x["requests_per_s"],
            x["requests"],
            x["errors"] + x["non2xx"],
        ]
        for x in runs
    ]
    c1 = next((x for x in runs if x["concurrency"] == 1), None)
    extra = [x for x in r["runs"] if "service_rss_mib_after" in x]
    inside = r.get("in_process_median")
    breakdown = (
        f"In process, without HTTP (medians over the same queries): query embedding "
        f"{inside['embed_query_ms']} ms; `PaperRetriever.search` dense {inside['search_dense_ms']} ms, bm25 "
        f"{inside['search_bm25_ms']} ms, hybrid {inside['search_hybrid_ms']} ms (every mode also runs the "
        "dense query: its similarity is a coverage signal). The rest of a request's time is HTTP, "
        "middleware and JSON."
        + (
            f" Of a hybrid search, the coverage decision (names, the top papers' lexical evidence, the closest paper's lead, the "
            f"model) takes {inside['coverage_decision_ms']} ms — target at most 2 ms: "
            f"{verdict(inside['coverage_decision_ms'], 2)}."
            if "coverage_decision_ms" in inside
            else ""
        )
        if inside
        else ""
    )
    return "\n\n".join(
        [
            f"## Retrieval only: `GET /search` over HTTP (wrk; embedding backend {r['embed_backend']})",
            provenance(r),
            table(["concurrency", "p50 ms", "p95 ms", "p99 ms", "requests/s", "requests", "errors"], rows),
            f"Queries rotate over the {r['queries']} dev questions (hybrid retrieval, k=5). "
            + (f"Service RSS after the runs: {extra[0]['service_rss_mib_after']} MiB. " if extra else "")
            + (
                f"Targets at concurrency 1: p50 under 15 ms — {verdict(c1['p50_ms'], 15)} ({c1['p50_ms']} ms); "
                f"p95 under 40 ms — {verdict(c1['p95_ms'], 40)} ({c1['p95_ms']} ms)."
                if c1
                else ""
            ),
            breakdown,
        ]
    )


def section_answers(r: dict[str, Any]) -> str:
    rows = []
    for name, v in r["variants"].items():
        rows.append(
            [
                name,
                json.dumps(v["settings"]) if v["settings"] else "defaults",
                v["first_token_s"]["p50"],
                v["first_token_s"]["p95"],
                v["total_s"]["p50"],
                v["total_s"]["p95"],
                v["decode_tokens_per_s"]["p50"] if v["decode_tokens_per_s"]["p50"] is not None else "–",
                v["prompt_tokens_mean"],
                v["completion_tokens_mean"],
            ]
        )
    d = r["variants"].get("default")
    return "\n\n".join(
        [
            "## Answers with the embedded model (SmolLM2-135M-Instruct Q4_1, llama.cpp in process)",
            provenance(r),
            table(
                [
                    "variant",
                    "settings",
                    "first token p50 s",
                    "p95 s",
                    "whole answer p50 s",
                    "p95 s",
                    "model tokens/s p50 (answering step)",
                    "prompt tokens (mean)",
                    "completion tokens (mean)",
                ],
                rows,
            ),
            f"Over {r['questions']} answerable dev questions each. "
            + (
                f"Targets (shipped defaults): first token p50 at most 2 s — {verdict(d['first_token_s']['p50'], 2.0)} "
                f"(p50 {d['first_token_s']['p50']} s); whole answer p50 at most 6 s — "
                f"{verdict(d['total_s']['p50'], 6.0)} ({d['total_s']['p50']} s)."
                if d
                else ""
            ),
        ]
    )


def section_concurrency(r: dict[str, Any]) -> str:
    return "\n\n".join(
        [
            "## Concurrent chats on the in-process model, and search meanwhile",
            provenance(r),
            table(
                [
                    "chats sent at once",
                    "chat statuses",
                    "slowest chat s",
                    "search p50/p95 ms idle",
                    "search p50/p95 ms during chats",
                ],
                [
                    [
                        r["chats_sent_at_once"],
                        json.dumps(r["chat_status_counts"]),
                        r["chat_seconds_max"],
                        f"{r['search_idle']['p50_ms']} / {r['search_idle']['p95_ms']}",
                        f"{r['search_during_chats']['p50_ms']} / {r['search_during_chats']['p95_ms']}",
                    ]
                ],
            ),
            "The model runs one generation at a time (`PAPERQA_LLM_MAX_CONCURRENCY=1`) with up to "
            '`PAPERQA_LLM_QUEUE_SIZE=4` waiting; past that a chat is answered at once with 503 "busy" '
            "(and the extractive fallback), instead of queueing without bound.",
        ]
    )


def pipeline_seconds(summary: str) -> float | None:
    """The ingest summary line ends with the pipeline's own seconds (``..., 12.3 s``)."""
    tail = summary.rsplit(",", 1)[-1].strip()
    try:
        return float(tail.removesuffix(" s"))
    except ValueError:
        return None


def _service_cell(service: dict[str, Any] | None) -> str:
    if not service:
        return "not measured"
    ready = service["rss_ready_mib"]
    after = service["rss_after_40_searches_mib"]
    return f"{service['ready_s_median']} / {max(ready)} → {max(after)}"


def _http_search_cell(service: dict[str, Any] | None) -> str:
    search = (service or {}).get("search_http_ms")
    return f"{search['p50']} / {search['p95']}" if search else "not measured"


STAGES = [
    ("embed_query", "the question embedded (MiniLM, onnx-int8)"),
    ("dense", "dense side (LlamaIndex retriever over Chroma)"),
    ("chroma_query", "of which the Chroma call"),
    ("bm25_side", "BM25 side"),
    ("bm25_scoring", "of which scoring every chunk (bm25s)"),
    ("bm25_top", "of which picking the best 30"),
    ("bm25_chunk_read", "of which reading those chunks from Chroma"),
    ("fusion", "both sides and their fusion"),
    ("named_papers", "papers asked for by name"),
    ("coverage_terms", "lexical coverage signals"),
    ("total", "the whole search"),
]


def _stages_table(r: dict[str, Any]) -> str:
    stages = r["retrieval"]["hybrid_stages"]
    rows = [
        [key, what, stages[key]["p50_ms"], stages[key]["p95_ms"], stages[key]["mean_ms"]]
        for key, what in STAGES
        if key in stages
    ]
    return (
        f"Where a hybrid search's time goes, {r['papers']:,} papers, {r['store']} store (in process, the "
        "dev questions twice, each stage timed by `bench.stages`; stages nest as the names say):\n\n"
        + table(["stage", "what", "p50 ms", "p95 ms", "mean ms"], rows)
    )


def section_scale(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        ing, ret = r["ingest"], r["retrieval"]
        lat = ret["latency"]
        approx = r.get("vectors", "embedded") != "embedded"
        # A resumed run (bench.scale --resume) was cut during ingestion: no ingestion figures.
        pipeline = None if ing.get("resumed") else pipeline_seconds(ing["summary"])
        rows.append(
            [
                r["papers"],
                r["store"],
                "sentence-mean (no forward pass)" if approx else "embedded",
                ret["chunks"],
                pipeline if pipeline else "resumed: not measured",
                round(r["papers"] / pipeline, 1) if pipeline else "–",
                r["disk_mib"],
                "–"
                if ing.get("resumed")
                else f"{ing['rss_first_quarter_max_mib']} → {ing['rss_last_quarter_max_mib']}",
                ret["retriever_load_s"],
                f"{lat['dense']['p50_ms']} / {lat['dense']['p95_ms']}",
                f"{lat['bm25']['p50_ms']} / {lat['bm25']['p95_ms']}",
                f"{lat['hybrid']['p50_ms']} / {lat['hybrid']['p95_ms']}",
                ret["rss_after_mib"],
                _service_cell(r.get("service")),
                _http_search_cell(r.get("service")),
            ]
        )
    parts = ["## Scale: synthetic corpora from the real abstracts"]
    parts += [provenance(r) for r in results]
    parts.append(
        table(
            [
                "papers",
                "store",
                "chunk vectors",
                "chunks",
                "ingest s (pipeline)",
                "papers/s",
                "disk MiB",
                "ingest RSS MiB (first → last quarter)",
                "retriever load s",
                "dense p50/p95 ms",
                "bm25 p50/p95 ms",
                "hybrid p50/p95 ms",
                "retriever process RSS MiB",
                "service: start to ready s (median) / RSS MiB ready → after 40 searches",
                "service GET /search p50/p95 ms (HTTP)",
            ],
            rows,
        )
    )
    parts.append(
        "Retrieval latency is in process (`PaperRetriever.search`, the query embedded for real), over the dev "
        "questions twice. *sentence-mean* rows (`--approx-vectors`): each chunk's vector is the mean of "
        "real vectors of its sentences, so their ingest time has no model forward pass in it (the "
        "embedded rows show that cost); chunking, Chroma writes, indexes and queries are the real ones."
    )
    big = [r for r in results if r["papers"] >= 100_000 and r["store"] == "embedded"]
    if big:
        p95 = big[0]["retrieval"]["latency"]["hybrid"]["p95_ms"]
        parts.append(f"Target at 100k: retrieval p95 under 50 ms (hybrid) — {verdict(p95, 50.0)} ({p95} ms).")
    for r in (r for r in results if r["papers"] == 100_000 and r.get("service")):
        service = r["service"]
        ready, rss = service["ready_s_median"], max(service["rss_after_40_searches_mib"])
        parts.append(
            f"Targets at 100k (issue 14), {r['store']} store: service start to ready at most 5 s — "
            f"{verdict(ready, 5.0)} ({ready} s, median of {len(service['ready_s'])}); service RSS at most "
            f"800 MiB — {verdict(rss, 800.0)} ({rss} MiB after 40 searches)."
        )
    for r in (r for r in results if r["papers"] >= 1_000_000 and r["store"] == "server"):
        search = (r.get("service") or {}).get("search_http_ms")
        if search:
            parts.append(
                f"Target at 1M (issue 14), server store: `GET /search` p95 at most 50 ms — "
                f"{verdict(search['p95'], 50.0)} ({search['p95']} ms over HTTP, {search['n']} searches)."
            )
    for r in (r for r in results if r["retrieval"].get("hybrid_stages")):
        parts.append(_stages_table(r))
    if any(r.get("service") for r in results):
        parts.append(
            "The service loads the BM25 index ingestion persisted (memory-mapped); it builds nothing. "
            "Its answers are extractive here (the local LLM's load is in the start-up section). With "
            "the embedded store, Chroma's HNSW index lives in the service's process; with a server, in the server."
        )
    else:
        parts.append(
            "Target at 100k: retrieval p95 under 50 ms — not measured yet "
            "(`python -m bench.scale --papers 100000 --approx-vectors`)."
        )
    return "\n\n".join(parts)


def main() -> int:
    parts = [
        "# Performance",
        "Every figure below was measured by a committed script in `bench/` and is regenerated by "
        "`python -m bench report` from `bench/results/*.json`; each section names the command that "
        "produced it. Machines here are noisy: the load average at the start of each run is shown.",
    ]
    for name, render in (
        ("ingest", section_ingest),
        ("embedder", section_embedder),
        ("startup", section_startup),
        ("search-onnx-int8", section_search),
        ("answers", section_answers),
        ("concurrency", section_concurrency),
    ):
        result = load(name)
        parts.append(
            render(result)
            if result
            else f"## {name}\n\nNot measured yet (`python -m bench.{name.split('-')[0]}`)."
        )
    names = [
        f"scale-{n}{server}{approx}"
        for n in (10000, 100000, 1000000)
        for server in ("", "-server")
        for approx in ("", "-approx")
    ]
    scale = [r for r in (load(n) for n in names) if r]
    parts.append(section_scale(scale) if scale else "## Scale\n\nNot measured yet (`python -m bench.scale`).")
    if RAY_NOTES.exists():
        parts.append(RAY_NOTES.read_text(encoding="utf-8").strip())
    if NOTES.exists():
        parts.append(NOTES.read_text(encoding="utf-8").strip())
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    print(f"wrote {DOC.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
