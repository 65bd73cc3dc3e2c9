"""``docs/evaluation.md``: the report command's results, as a document (generated; never hand-edited)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from app.core.settings import Settings
from eval import metrics as m
from eval import tables as rp
from eval.config import Config, default_config
from eval.questions import TYPES, Question, load_questions
from eval.suite import Suite, machine_note, now_stamp

SWEEP_FLOORS = (0.25, 0.30, 0.35, 0.40, 0.45)
SETTING_FIELDS = (
    ("retrieval_mode", "PAPERQA_RETRIEVAL_MODE"),
    ("chunk_size", "PAPERQA_CHUNK_SIZE"),
    ("top_k", "PAPERQA_TOP_K"),
    ("relevance_floor", "PAPERQA_RELEVANCE_FLOOR"),
    ("condense_mode", "PAPERQA_CONDENSE_MODE"),
)


def type_counts(dev: Sequence[Question], test: Sequence[Question]) -> str:
    rows = [[t, str(sum(q.type == t for q in dev)), str(sum(q.type == t for q in test))] for t in TYPES]
    rows.append(["**all**", str(len(dev)), str(len(test))])
    return rp.table(["type", "dev", "test"], rows)


def by_type_matrix(summaries: Sequence[Mapping[str, Any]], metric: str) -> str:
    types = [t for t in TYPES if t != "out_of_scope"]
    rows = [
        [
            f"`{s['label']}`",
            *(rp.fmt(rp.value(s, "retrieval", metric, t)) for t in types),
            rp.fmt(rp.value(s, "retrieval", metric)),
        ]
        for s in summaries
    ]
    return rp.table(["config", *types, "answerable"], rows)


def calibration_section(cal: Mapping[str, Any], shipped: float) -> str:
    ans, oos = cal["answerable"], cal["out_of_scope"]
    spread = rp.table(
        ["questions", "n", "min", "median", "max"],
        [
            [name, str(len(v)), rp.fmt(min(v)), rp.fmt(sorted(v)[(len(v) - 1) // 2]), rp.fmt(max(v))]
            for name, v in (("answerable", ans), ("out_of_scope", oos))
            if v
        ],
    )
    cur = cal["current"]
    outcomes = rp.table(
        [
            "floor",
            "accuracy (in/out)",
            "answerable refused",
            "out-of-scope let through",
            "refusal acc. (OOS)",
            "false refusal rate",
        ],
        [
            [
                f"{o['floor']:g}" + (" (calibrated)" if o is cal else " (shipped)"),
                rp.fmt(o["accuracy"]),
                str(o["false_refusals"]),
                str(o["missed_out_of_scope"]),
                rp.fmt(o["refusal_accuracy"]),
                rp.fmt(o["false_refusal_rate"]),
            ]
            for o in (cal, cur)
        ],
    )
    sweep = rp.table(
        ["floor", "accuracy (in/out)", "answerable refused", "out-of-scope let through"],
        [
            [
                f"{v:g}",
                rp.fmt(o["accuracy"]),
                f"{o['false_refusals']}/{len(ans)}",
                f"{o['missed_out_of_scope']}/{len(oos)}",
            ]
            for v in SWEEP_FLOORS
            for o in [m.floor_outcome(ans, oos, v)]
        ],
    )
    return "\n".join(
        [
            f"The service refuses when the best dense cosine similarity between the question (and, for a "
            f"follow-up, its condensed form) and any chunk is below the floor. `python -m eval calibrate` "
            f"takes that top similarity for every dev question (chunk size {cal['chunk_size']}, condense "
            f"`{cal['condense_mode']}`) and picks the floor with the best in/out accuracy, ties broken "
            f"toward fewer false refusals (candidates: midpoints between neighbouring observed values, "
            f"rounded to 3 decimals).",
            "",
            f"**Calibrated floor: {cal['floor']:g}** (shipped: {shipped:g}).",
            "",
            "Top similarity per group:",
            "",
            spread,
            "",
            outcomes,
            "",
            f"Out-of-scope top similarities: {', '.join(rp.fmt(v) for v in oos)}.  ",
            f"Lowest answerable ones: {', '.join(rp.fmt(v) for v in ans[:8])}.",
            "",
            f"Other floors on the same dev similarities (chunk size {cal['chunk_size']}):",
            "",
            sweep,
        ]
    )


def shipped_sims(suite: Suite, shipped_run: Config, set_name: str) -> tuple[list[float], list[float]]:
    """(answerable, out-of-scope) top similarities at the shipped chunking and condensing."""
    for (s, name), rows in suite.rows.items():
        c = suite.configs[name]
        if s == set_name and (c.chunk_size, c.chunk_overlap, c.condense_mode) == (
            shipped_run.chunk_size,
            shipped_run.chunk_overlap,
            shipped_run.condense_mode,
        ):
            return (
                [r["top_similarity"] for r in rows if r["type"] != "out_of_scope"],
                [r["top_similarity"] for r in rows if r["type"] == "out_of_scope"],
            )
    return [], []


def floor_held_out(suite: Suite, shipped_run: Config, recommended: float) -> str:
    """One sentence: the shipped (and recommended) floor on the test questions. Informs, decides nothing."""
    ans, oos = shipped_sims(suite, shipped_run, "test")
    if not ans or not oos:
        return ""
    parts = []
    for value in dict.fromkeys([shipped_run.relevance_floor, recommended, 0.3]):
        o = m.floor_outcome(ans, oos, value)
        parts.append(
            f"floor {value:g} refuses {o['false_refusals']}/{len(ans)} answerable and lets "
            f"{o['missed_out_of_scope']}/{len(oos)} out-of-scope through"
        )
    return (
        f"**Held-out check of the floor** (test questions, shipped chunk size {shipped_run.chunk_size}; "
        "reported, not used by any rule): " + "; ".join(parts) + ". See the floor tables below."
    )


def floor_sweep(suite: Suite, shipped_run: Config, floors: Sequence[float]) -> str:
    """Floors at the shipped chunking on dev and, as a held-out check (nothing tuned on it), on test.

    Top similarities depend on the chunking and the condensing only, so the dev ones come from any
    dev run with the shipped chunk size and condense mode, the test ones from the shipped test run.
    """
    columns = [(name, *shipped_sims(suite, shipped_run, name)) for name in ("dev", "test")]
    columns = [c for c in columns if c[1] and c[2]]
    header = ["floor"]
    for name, _ans, _oos in columns:
        header += [f"{name} accuracy", f"{name} answerable refused", f"{name} OOS let through"]
    rows = []
    for value in sorted({round(f, 3) for f in floors}):
        tag = " (shipped)" if abs(value - shipped_run.relevance_floor) < 5e-4 else ""
        row = [f"{value:g}{tag}"]
        for _, ans, oos in columns:
            o = m.floor_outcome(ans, oos, value)
            row += [
                rp.fmt(o["accuracy"]),
                f"{o['false_refusals']}/{len(ans)}",
                f"{o['missed_out_of_scope']}/{len(oos)}",
            ]
        rows.append(row)
    return "\n".join(
        [
            f"The same floors at the shipped chunking (chunk size {shipped_run.chunk_size}, condense "
            f"`{shipped_run.condense_mode}`) on dev and, as a held-out check, on the **test** questions "
            "(top similarities of the shipped config's test run). Only dev numbers were used for any "
            "choice.",
            "",
            rp.table(header, rows),
        ]
    )


def recommended_section(
    rec: Config,
    reasons: Sequence[str],
    dev_rec: Mapping[str, Any] | None,
    dev_default: Mapping[str, Any] | None,
    held_out: str = "",
) -> str:
    shipped = default_config()
    rows = []
    for field, env in SETTING_FIELDS:
        a, b = getattr(shipped, field), getattr(rec, field)
        rows.append([f"`{field}` (`{env}`)", f"`{a}`", f"`{b}`", "same" if a == b else "**change**"])
    parts = [rp.table(["setting", "shipped (app/settings.py)", "recommended", ""], rows), ""]
    parts += [f"- {r}" for r in reasons]
    if rec == shipped.with_(llm_backend=rec.llm_backend):
        parts += ["", "The dev numbers support the shipped defaults: no change is recommended."]
    elif dev_rec is not None and dev_default is not None:
        parts += [
            "",
            "Dev, extractive answers, shipped vs recommended (same answer backend, so the "
            "difference is retrieval, top_k and floor only):",
            "",
            rp.answer_comparison([dev_default, dev_rec]),
        ]
    if held_out:
        parts += ["", held_out]
    parts += ["", "These are recommendations: `app/settings.py` is not changed by this command."]
    return "\n".join(parts)


def caveats(
    dev: Sequence[Question], loads: Sequence[float], noisy: bool, llm_runs: Sequence[Mapping[str, Any]] = ()
) -> str:
    counts = [n for n in (sum(q.type == t for q in dev) for t in TYPES) if n]
    answerable = sum(q.answerable for q in dev)
    lines = [
        f"- Small sets: {len(dev)} dev questions, {min(counts)}-{max(counts)} per type, so one question "
        f"moves a type's mean by {1 / max(counts):.2f}-{1 / min(counts):.2f}, and a mean over the "
        f"{answerable} answerable ones by up to {1 / max(answerable, 1):.3f}. The rules above only move "
        "away from a shipped value on a lead larger than one question could make.",
        '- Key facts are matched as exact substrings (ignoring case): a correct paraphrase ("6.4 '
        'points" written as "6.4 pts") counts as a miss, so key-fact match is a lower bound.',
        "- `multi` gold lists were built by hand: a retrieved paper outside the list may still fit.",
        "- Extractive answers always cite the first three sources, so their citation numbers mostly "
        "measure retrieval precision at 3; the local LLM (SmolLM2-135M) decides what to cite itself.",
        "- Latency depends on the machine and on what else runs: the 1-minute load average, sampled "
        f"at every question, was {min(loads, default=0):.1f} to {max(loads, default=0):.1f} (median "
        f"{sorted(loads)[(len(loads) - 1) // 2] if loads else 0:.1f}) on {os.cpu_count()} cores during "
        "this run.",
    ]
    if noisy:
        lines.append(
            "- **The machine was busy during this run** (median load average above the core "
            "count: other processes were using the CPU): latencies, the LLM's above all, are "
            "inflated and noisy; compare them between configs of this run only."
        )
    elif loads and max(loads) > (os.cpu_count() or 1):
        lines.append(
            "- The load average went above the core count at times (other processes were "
            "using the CPU): single latency numbers, p95 above all, are noisy."
        )
    timeout = float(Settings.model_fields["llm_timeout_s"].default)
    for run in llm_runs:
        if run.get("fallbacks"):
            lines.append(
                f"- {run['fallbacks']} of the {run['n_questions']} {run['set']} answers of `{run['name']}` "
                f"are extractive fallbacks (the LLM failed or hit its {timeout:g} s timeout): their "
                "answer metrics are those of the extractive answer. Under the load above, timeouts "
                "are the likely cause."
            )
    return "\n".join(lines)


def dense_recall_note(recall: Mapping[str, Any]) -> str:
    if not recall:
        return "Not measured in this run."
    return (
        f"Chroma searches an HNSW graph, an approximate index. Over the {recall['questions']} dev and "
        f"test questions, the exact top {recall['depth']} chunks (brute force over all "
        f"{recall['chunks']} stored vectors) were found among the {recall['candidates']} chunks the "
        f"dense side fetches with a share of **{recall['recall']:.4f}**, and the single nearest chunk "
        f"in {recall['nearest_found']} of {recall['questions']} (HNSW `ef_search` "
        f"{recall['ef_search']}, `PAPERQA_HNSW_EF_SEARCH`). Before `ef_search` was set explicitly "
        "the collection searched much narrower than the 100 it reports: the dense side missed the "
        "nearest chunk of a dev keyword question entirely, which moved that question's paper from "
        "rank 1 to rank 6 in hybrid retrieval on one build of the index and not on another."
    )


def render(
    suite: Suite,
    result: Mapping[str, Any],
    run_dir_name: str,
    dev: Sequence[Question],
    test: Sequence[Question],
) -> str:
    d = default_config()
    grid, condense = result["grid"], result["condense"]
    rec = result["recommended"]
    s = suite.summary
    dev_answers = [s("dev", c) for c in [*result["answer_configs"], result["local_default"]]]
    # One row per config in the answer table (a config can be both in the grid and the k sweep).
    dev_answers = list({x["name"] + x["label"]: x for x in dev_answers}.values())
    rec_ex = rec.config.with_(llm_backend="extractive")
    dev_rec = s("dev", rec_ex) if ("dev", rec_ex.name) in suite.rows else None
    dflt_ex = d.with_(llm_backend="extractive")
    dev_default = s("dev", dflt_ex) if ("dev", dflt_ex.name) in suite.rows else None
    retrieval_rows = list({c.name: s("dev", c) for c in [*grid, *condense]}.values())
    test_default = s("test", result["local_default"])
    dev_local = s("dev", result["local_default"])
    loads = sorted(suite.loads)
    median_load = loads[(len(loads) - 1) // 2] if loads else 0.0
    noisy = median_load > (os.cpu_count() or 1)
    timing = suite.total_timing()
    if timing.get("passes", 1) > 1:
        took = (
            f"in {timing['total'] / 60:.1f} min of running over {timing['passes']:.0f} passes "
            f"(`--resume`; configs already in the run folder were not run again)"
        )
    else:
        took = f"in {timing.get('total', 0) / 60:.1f} min"
    limited = len(dev) < len(load_questions("dev")) or len(test) < len(load_questions("test"))

    parts = [
        "# Evaluation",
        "",
        f"Generated by `python -m eval report` (or `make eval`) on {now_stamp()} ({machine_note()}) "
        f"{took}. **Do not edit by hand**: rerun the command. Per-question results "
        f"(JSONL) and the summary (JSON) are in the run folder `eval/runs/{run_dir_name}/` "
        "(not committed).",
        "",
    ]
    if limited:
        parts += [
            f"> **Partial run**: {len(dev)} dev and {len(test)} test questions only "
            "(`--limit`); the numbers below are not the reference ones.",
            "",
        ]
    parts += [
        "## Summary",
        "",
        f"Held-out **test** set, shipped defaults (`{result['local_default'].name}`"
        + (", the bundled SmolLM2-135M answering" if result["local_default"].llm_backend == "local" else "")
        + "): "
        f"hit@5 {rp.fmt(rp.value(test_default, 'retrieval', 'hit@5'))}, "
        f"MRR@10 {rp.fmt(rp.value(test_default, 'retrieval', 'mrr@10'))}, "
        f"nDCG@10 {rp.fmt(rp.value(test_default, 'retrieval', 'ndcg@10'))}; "
        f"citation precision {rp.fmt(rp.value(test_default, 'answers', 'citation_precision'))}, "
        f"citation recall {rp.fmt(rp.value(test_default, 'answers', 'citation_recall'))}, "
        f"hallucinated citations {test_default.get('hallucinated_total', 0)}; "
        f"out-of-scope refused {rp.fmt(rp.value(test_default, 'answers', 'oos_refused', 'out_of_scope'))}, "
        f"answerable wrongly refused {rp.fmt(rp.value(test_default, 'answers', 'false_refusal'))}; "
        f"key-fact match on detail questions "
        f"{rp.fmt(rp.value(test_default, 'answers', 'key_fact_match', 'detail'))}; "
        f"answer latency p50 {rp.fmt_ms(test_default['latency_ms'].get('total_ms', {}).get('p50'))}, "
        f"p95 {rp.fmt_ms(test_default['latency_ms'].get('total_ms', {}).get('p95'))}.",
        "",
        f"Calibrated relevance floor (dev, chunk size {result['calibration']['chunk_size']}): "
        f"**{result['calibration']['floor']:g}** (`python -m eval calibrate --config "
        f"c{result['calibration']['chunk_size']}` prints it; without `--config` it calibrates the "
        "shipped chunking).",
        "",
        "## Recommended defaults",
        "",
        recommended_section(
            rec.config,
            rec.reasons,
            dev_rec,
            dev_default,
            floor_held_out(suite, result["local_default"], rec.config.relevance_floor),
        ),
        "",
        "## How it is measured",
        "",
        "Question sets (`eval/questions/`, see its README): **dev** for every comparison and every "
        "choice here; **test** held out, run once, for the shipped defaults only.",
        "",
        type_counts(dev, test),
        "",
        "- **Retrieval**: for each question, `PaperRetriever.search(queries, mode, top_k=10)` with the "
        "service's own queries (`app.answering.pipeline.standalone_queries`: a follow-up also searches with the "
        "previous user turn joined to it; `cond-off` = the raw question only; `cond-llm` = the "
        "service's LLM rewrite). Ranking = the papers' titles in order; titles are matched to the "
        "gold ones after `app.core.records.normalize_title`. Binary relevance: hit@k (a gold paper in "
        "the first k), recall@k (share of the gold papers in the first k), MRR@10, nDCG@10 (ideal = "
        "all gold papers first). Over the answerable questions (out-of-scope ones have no gold).",
        "- **Answers** (`Answerer.answer`, the service's non-streaming path, in process): citation "
        "precision = share of the cited papers that are gold (over answered, answerable questions "
        "that cite something); citation recall = share of the gold papers cited; key-fact match = "
        "share of a question's key facts found (case-insensitive substring) in the answer; key facts "
        "in sources = the same, in the source passages handed to the answerer (what any answerer "
        "could state). Recall and the key-fact numbers are over all answerable questions, a wrongly "
        "refused one counting 0, so refusing never raises them. Hallucinated citations = cited titles "
        "that are no paper of the corpus (must be 0); refusal accuracy = share of out-of-scope "
        "questions refused; false refusals = share of answerable questions refused.",
        "- **Answer backends**: the bundled local LLM answers only for the shipped config (it takes "
        "seconds per answer on 2 cores); every other answer config uses the extractive backend "
        "(no LLM: the best-matching sentence of each of the first three sources, cited), which is "
        "also the service's fallback.",
        "- **Latency**: nearest-rank percentiles (p-th = the value at rank ceil(p/100·n) of the "
        "sorted values). `search` = the retrieval part timed by the evaluator; `retrieve`, "
        "`generate`, `total` = the service's own timings of the answer.",
        "- **Config names** are specs that `python -m eval answers --configs NAME` accepts: mode, "
        "`c` chunk size (overlap 32), `k` top_k, answer backend, then only what differs from the "
        "shipped defaults (`f` floor, `cond-` condense mode, `retrieval-only`).",
        "",
        "## Dev: retrieval",
        "",
        "Retrieval modes by chunk size (the retrieval part of the extractive runs; retrieval does "
        "not depend on the answer backend), then condensing of follow-ups (shipped mode and chunk "
        "size, retrieval only):",
        "",
        rp.retrieval_comparison(retrieval_rows),
        "",
        "nDCG@10 per question type:",
        "",
        by_type_matrix(retrieval_rows, "ndcg@10"),
        "",
        "hit@5 per question type:",
        "",
        by_type_matrix([s("dev", c) for c in grid], "hit@5"),
        "",
        "### Relevance floor",
        "",
        calibration_section(result["calibration"], d.relevance_floor),
        "",
        floor_sweep(
            suite, result["local_default"], [*SWEEP_FLOORS, result["calibration"]["floor"], d.relevance_floor]
        ),
        "",
        "### Dense recall of the vector index",
        "",
        dense_recall_note(suite.dense_recall),
        "",
        "### Embedding path: int8 (ONNX) against fp32 (torch)",
        "",
        "The shipped embedder runs MiniLM with int8 weights on ONNX Runtime, whose int8 kernels "
        "differ between CPUs (with or without AVX-512 VNNI), so the vectors, and ranks at the "
        "margin, differ slightly from one machine to another. The fp32 torch path is the reference. "
        "The same dev questions, retrieval only, on this machine "
        f"({machine_note()}):",
        "",
        rp.retrieval_comparison([s("dev", c) for c in result.get("embed_paths", [])]),
        "",
        "A difference of one question moves MRR@10 by up to "
        f"{1 / max(sum(q.answerable for q in dev), 1):.3f}; differences of that size between "
        "two machines, or between the two paths, are what int8 kernels do, not a change in quality. "
        'The tests assert what holds on any x86-64 CPU (docs/reliability.md, "Tests and the CPU").',
        "",
        "## Dev: answers",
        "",
        "Extractive answers for the comparisons, the local LLM for the shipped config "
        f"(`{result['local_default'].name}`, labelled *default (shipped)*). Refusal accuracy is over "
        "the out-of-scope questions, false refusals over the answerable ones.",
        "",
        rp.answer_comparison(dev_answers),
        "",
        "Shipped config with the local LLM, per type:",
        "",
        rp.answers_by_type(dev_local),
        "",
        *(
            ["The same config with extractive answers, per type:", "", rp.answers_by_type(dev_default), ""]
            if dev_default
            else []
        ),
        "## Test (held out): shipped defaults",
        "",
        rp.config_section(test_default, level=3),
        "",
        "## Chart",
        "",
        "![dev and test comparison](evaluation.png)",
        "",
        "Top: retrieval of every dev config (answerable questions). Bottom: answer configs.",
        "",
        "## Caveats",
        "",
        caveats(dev, suite.loads, noisy, [dev_local, test_default]),
        "",
        "## Every configuration in detail",
        "",
    ]
    for summary in [
        *(s("dev", c) for c in suite.configs.values() if ("dev", c.name) in suite.rows),
        test_default,
    ]:
        parts += [
            "<details>",
            f"<summary>{summary['set']}: <code>{summary['label']}</code></summary>",
            "",
            rp.config_section(summary, level=4),
            "</details>",
            "",
        ]
    return "\n".join(parts)
