"""``docs/evaluation.md``: the report command's results, as a document (generated; never hand-edited)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from app.core.settings import Settings
from eval import tables as rp
from eval.config import Config, default_config
from eval.questions import TYPES, Question, load_questions
from eval.suite import (
    FOLLOWUPS,
    Suite,
    followup_configs,
    followup_score,
    machine_note,
    now_stamp,
    pick,
)

SETTING_FIELDS = (
    ("retrieval_mode", "PAPERQA_RETRIEVAL_MODE"),
    ("chunk_size", "PAPERQA_CHUNK_SIZE"),
    ("top_k", "PAPERQA_TOP_K"),
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


def pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.1f} %)" if d else "–"


def coverage_targets(o: Any) -> str:
    """The issue's targets, one line: answerable and named refused, out-of-scope and near-topic refused."""
    return (
        f"answerable refused {pct(o.answerable_refused, o.answerable)} (target ≤ 3 %), of which named "
        f"{pct(o.named_refused, o.named)} (target ≤ 3 %); out-of-scope refused "
        f"{pct(o.out_of_scope_refused, o.out_of_scope)} (target ≥ 90 %), near-topic "
        f"{pct(o.near_topic_refused, o.near_topic)} (target ≥ 80 %)"
    )


def coverage_section(coverage: Mapping[str, Any]) -> str:
    from eval import coverage as cv

    held = coverage["held_out"]
    model = held["model"]
    kinds = ["dev", "test"]
    types = sorted({*held["dev_types"], *held["test_types"]}, key=lambda t: (t.startswith("out_of_scope"), t))
    per_type = rp.table(
        ["type", *(f"{k} answered" for k in kinds), *(f"{k} refused" for k in kinds)],
        [
            [
                t,
                *(str(held[f"{k}_types"].get(t, {}).get("answered", 0)) for k in kinds),
                *(str(held[f"{k}_types"].get(t, {}).get("refused", 0)) for k in kinds),
            ]
            for t in types
        ],
    )
    named = rp.table(
        [
            "named questions",
            "dev asked",
            "dev refused",
            "dev named paper first",
            "test asked",
            "test refused",
            "test named paper first",
        ],
        [
            [
                key,
                *(
                    str(held[f"named_{k}"].get(key, {}).get(col, 0))
                    for k in kinds
                    for col in ("asked", "refused", "named first")
                ),
            ]
            for key in sorted({*held["named_dev"], *held["named_test"]})
        ],
    )

    def o(x: Any) -> list[str]:
        return [
            rp.fmt(x.balanced_accuracy),
            pct(x.answerable_refused, x.answerable),
            pct(x.out_of_scope_refused, x.out_of_scope),
            pct(x.near_topic_refused, x.near_topic),
        ]

    folds = coverage["cross_validated"]
    tuned_on = "dev + dev-coverage" if held.get("extra") is not None else "dev"
    compare = rp.table(
        [
            f"{tuned_on}, 5-fold cross-validation",
            "balanced accuracy",
            "answerable refused",
            "out-of-scope refused",
            "near-topic refused",
        ],
        [[kind, *o(x)] for kind, x in folds.items()],
    )
    ablation = rp.table(
        [
            f"left out (refitted on {tuned_on})",
            f"{tuned_on} balanced acc.",
            f"{tuned_on} answerable refused",
            f"{tuned_on} out-of-scope refused",
            "test balanced acc.",
            "test answerable refused",
            "test out-of-scope refused",
            "test near-topic refused",
        ],
        [
            [
                a["left_out"],
                rp.fmt(a["dev"].balanced_accuracy),
                pct(a["dev"].answerable_refused, a["dev"].answerable),
                pct(a["dev"].out_of_scope_refused, a["dev"].out_of_scope),
                rp.fmt(a["test"].balanced_accuracy),
                pct(a["test"].answerable_refused, a["test"].answerable),
                pct(a["test"].out_of_scope_refused, a["test"].out_of_scope),
                pct(a["test"].near_topic_refused, a["test"].near_topic),
            ]
            for a in held["ablation"]
        ],
    )
    return "\n".join(
        [
            "The service answers a question or refuses it (`app.retrieval.coverage`, the same function "
            "here and in the service). Signals: `dense` (best MiniLM cosine between the question and a "
            "chunk), `share` (IDF-weighted share of the question's terms found in one of the top 3 papers), "
            "`bm25` (a top paper's BM25 score over the most the question's terms could score), `absent` "
            "(IDF-weighted share of the question's terms that no chunk holds), `dense_gap` (how far the "
            "closest paper stands out: its best cosine minus the mean of the next four papers') and `named` (the question "
            'asks for a paper by the name its title gives it: "What is Linformer?", "swin v2"). A named '
            "paper is always covered and put first; otherwise the model decides. `python -m eval calibrate` "
            "fits both model kinds on the tuning questions and prints the settings: dev and, for this "
            "decision only, `eval/questions/dev-coverage.jsonl` (68 more: 38 out-of-scope, 30 answerable "
            'questions asked as near-topic ones are, "Which paper uses a transformer to ...", in other '
            "words than the titles; `python -m eval calibrate --set dev+dev-coverage`).",
            "",
            f"Shipped model: `{model.kind}`, "
            + ", ".join(f"`{line}`" for line in cv.settings_lines(model))
            + ".",
            "",
            compare,
            "",
            f"**Held-out test, shipped settings**: {coverage_targets(held['test'])}.  ",
            f"Dev, shipped settings: {coverage_targets(held['dev'])}."
            + (
                f"  \nDev-coverage, shipped settings: {coverage_targets(held['extra'])}."
                if held.get("extra") is not None
                else ""
            ),
            "",
            "Answered and refused per question type (shipped config):",
            "",
            per_type,
            "",
            "Questions that name a paper, by phrasing and by how the name is written against the title "
            '("named paper first": a paper the question names is the first source):',
            "",
            named,
            "",
            f"Each signal's contribution: the model refitted on {tuned_on} without it, then judged there and on test:",
            "",
            ablation,
        ]
    )


def _total(summary: Mapping[str, Any], metric: str) -> int | None:
    cell = summary.get("answers", {}).get("all", {}).get(metric, {})
    if not cell.get("n") or cell.get("mean") is None:
        return None
    return round(cell["mean"] * cell["n"])


def strategy_figures(suite: Suite, config: Config, set_name: str) -> dict[str, Any]:
    summary = suite.summary(set_name, config)
    latency = summary["latency_ms"]
    return {
        **suite.strategy_score(config, set_name),
        "replaced": rp.value(summary, "answers", "unsupported_replaced"),
        "shipped_unsupported": _total(summary, "shipped_unsupported"),
        "trimmed": _total(summary, "trimmed"),
        "first_token_p50": latency.get("first_token_ms", {}).get("p50"),
        "total_p50": latency.get("total_ms", {}).get("p50"),
        "fallbacks": summary.get("fallbacks", 0),
        "n_single": summary["answers"]["all"].get("single_gold_cited", {}).get("n") or 0,
    }


def strategies_section(suite: Suite, result: Mapping[str, Any]) -> str:
    st = result["strategies"]
    configs: dict[str, Config] = st["configs"]
    figures = {
        (name, set_name): strategy_figures(suite, c, set_name)
        for name, c in configs.items()
        for set_name in ("dev", "test")
    }
    rows = []
    for set_name in ("dev", "test"):
        for name in configs:
            f = figures[(name, set_name)]
            rows.append(
                [
                    f"`{name}`" + (" (shipped)" if name == st["shipped"] else ""),
                    set_name,
                    rp.fmt(f["single_gold_cited"]),
                    rp.fmt(f["citation_precision"]),
                    rp.fmt(f["multi_recall"]),
                    rp.fmt(f["detail_facts"]),
                    rp.fmt(f["score"]),
                    rp.fmt(f["replaced"], 2),
                    str(f["shipped_unsupported"]),
                    str(f["trimmed"]),
                    rp.fmt_ms(f["first_token_p50"]),
                    rp.fmt_ms(f["total_p50"]),
                    str(f["fallbacks"]),
                ]
            )
    table = rp.table(
        [
            "strategy",
            "set",
            "gold cited (1-paper q.)",
            "citation precision",
            "citation recall (multi)",
            "key facts (detail)",
            "mean of the four",
            "sentences replaced or dropped per answer",
            "unsupported shipped",
            "replies trimmed",
            "first token p50",
            "answer p50",
            "fallbacks",
        ],
        rows,
    )
    verdicts = []
    labels = {
        "single_gold_cited": "gold paper cited",
        "citation_precision": "citation precision",
        "multi_recall": "citation recall on multi-paper questions",
        "detail_facts": "key facts on detail questions",
    }
    for name in configs:
        if name == "extract":
            continue
        for set_name in ("dev", "test"):
            mine, base = figures[(name, set_name)], figures[("extract", set_name)]
            margin = 1 / max(mine["n_single"], 1)
            better = [
                labels[k]
                for k in labels
                if mine[k] is not None and base[k] is not None and mine[k] - base[k] > margin
            ]
            worse = [
                labels[k]
                for k in labels
                if mine[k] is not None and base[k] is not None and base[k] - mine[k] > margin
            ]
            verdicts.append(
                f"- `{name}` against `extract` on {set_name}: "
                + (f"adds on {', '.join(better)}" if better else "adds nothing measurable")
                + (f"; loses on {', '.join(worse)}" if worse else "")
                + f" (answer p50 {rp.fmt_ms(mine['total_p50'])} against {rp.fmt_ms(base['total_p50'])})."
            )
    shipped = figures[(st["shipped"], "test")]
    targets = (
        f"**Held-out test, shipped strategy `{st['shipped']}`**: gold paper cited on one-paper questions "
        f"{rp.fmt(shipped['single_gold_cited'])} (target ≥ 0.95), citation precision "
        f"{rp.fmt(shipped['citation_precision'])} (≥ 0.85), citation recall on multi-paper questions "
        f"{rp.fmt(shipped['multi_recall'])} (≥ 0.85), key facts on detail questions "
        f"{rp.fmt(shipped['detail_facts'])} (≥ 0.80); sentences shipped that the checker marks unsupported "
        f"{shipped['shipped_unsupported']} (target 0); answer p50 {rp.fmt_ms(shipped['total_p50'])} (target ≤ 6 s; "
        "first-token and answer latency under load: docs/performance.md)."
    )
    return "\n".join(
        [
            "Each answer is written by one strategy (`PAPERQA_ANSWER_STRATEGY`; `app/answering/strategies.py`): "
            "`extract` lays the evidence out paper by paper with no model; `compose` keeps that layout and "
            "asks the model for one sentence per paper from its evidence; `generate` makes one model call "
            "over every source's evidence. Every sentence of every answer then passes the claim check "
            '(see "Claim check"); a failing one is replaced by the paper\'s evidence or dropped. All with '
            f"the bundled model (`{result['local_default'].llm_backend}`), on dev and on test:",
            "",
            table,
            "",
            *verdicts,
            "",
            f"Rule: on dev, the best mean of the four faithfulness figures; within one question's worth, the "
            f"cheapest (extract < compose < generate). Picked for the bundled model: **`{st['picked']}`** "
            f"(shipped: `{st['shipped']}`). A strong model behind `OPENAI_BASE_URL` gets `generate` (one "
            "call over the evidence), which this evaluation cannot measure without one.",
            "",
            targets,
        ]
    )


EVIDENCE_FIGURES = (
    ("single_gold_cited", "gold cited (1-paper q.)"),
    ("citation_precision", "citation precision"),
    ("multi_recall", "citation recall (multi)"),
    ("detail_facts", "key facts (detail)"),
    ("score", "mean of the four"),
    ("sentences_per_answer", "evidence sentences per answer"),
)


def evidence_section(sweep: Mapping[str, Any] | None) -> str:
    """The evidence and paper-selection settings: the sweep over the tuning questions."""
    if not sweep:
        return "Not run."
    knobs = list(sweep["shipped_setting"])
    head = "| setting | " + " | ".join(f"`{k}`" for k in knobs) + " | "
    head += " | ".join(label for _, label in EVIDENCE_FIGURES) + " |"
    rule = "|" + "---|" * (1 + len(knobs) + len(EVIDENCE_FIGURES))

    def row(name: str, setting: Mapping[str, float], figures: Mapping[str, float]) -> str:
        cells = [f"{setting[k]:g}" for k in knobs] + [f"{figures[k]:.3f}" for k, _ in EVIDENCE_FIGURES]
        return f"| {name} | " + " | ".join(cells) + " |"

    rows = [row("shipped", sweep["shipped_setting"], sweep["shipped"])]
    rows += [row(f"best #{i + 1}", s, f) for i, (s, f) in enumerate(sweep["top"])]
    best = sweep["top"][0][1]["score"] if sweep["top"] else None
    margin = 1.0 / max(int(sweep["questions"]), 1)  # one question's worth of the mean
    gap = None if best is None else best - sweep["shipped"]["score"]
    if gap is not None and gap < 1e-9:
        verdict = "The shipped setting scores as well as the best of the grid."
    elif gap is not None and gap <= margin:
        verdict = (
            f"The best of the grid scores {best:.3f} against the shipped {sweep['shipped']['score']:.3f}, "
            f"within one question's worth ({margin:.3f}): equally good, the shipped setting stays."
        )
    else:
        verdict = (
            f"The best of the grid scores {best:.3f} against the shipped {sweep['shipped']['score']:.3f}: "
            "consider `" + " ".join(sweep["lines"]) + "`."
        )
    return "\n".join(
        [
            "Which sentences of each paper's abstract are its evidence, and which papers an answer covers "
            "(`app/answering/evidence.py`, `app/answering/compose.py`), are settings swept by "
            f"`python -m eval evidence --set dev+dev-coverage+dev-answers+dev-details`: {sweep['settings']} "
            f"settings replayed over the {sweep['questions']} answerable tuning questions (dev, "
            "dev-coverage, dev-answers, dev-details; never test), with the service's own scoring and "
            "paper selection, no model. Figures are what the extract answer would cite and state: gold "
            "paper cited on one-paper questions, citation precision, recall on multi-paper questions, "
            "key facts of detail questions present in the evidence. Rule: the best mean of the four; "
            "within one question's worth (1 / the number of questions) of the best, the shipped setting "
            "stays; ties, fewer sentences.",
            "",
            head,
            rule,
            *rows,
            "",
            verdict,
        ]
    )


def claims_section(claims: Mapping[str, Any] | None) -> str:
    if not claims:
        return "Not measured in this run (no labelled set)."
    rows = []
    for set_name, cell in claims["sets"].items():
        rows.append(
            [
                set_name,
                str(cell["n"]),
                str(cell["unsupported"]),
                str(cell["flagged"]),
                rp.fmt(cell["precision"]),
                rp.fmt(cell["recall"]),
            ]
        )
    origin_rows = []
    for set_name, cell in claims["sets"].items():
        for origin, o in cell["by_origin"].items():
            origin_rows.append(
                [
                    set_name,
                    origin,
                    str(o["n"]),
                    str(o["unsupported (label)"]),
                    str(o["flagged"]),
                    str(o["agree"]),
                ]
            )
    return "\n".join(
        [
            f"The checker (`app/answering/claims.py`) on {claims['rows']} hand-labelled answer sentences "
            "(`eval/claims/labelled.jsonl`: sentences the bundled model wrote, extract sentences, and "
            "extract sentences corrupted on purpose: a swapped citation, a changed number, an invented "
            "model name, a claim from another paper). A sentence is flagged when it cites no retrieved "
            "paper, states a number, name or quoted term its cited abstract lacks, or is less similar "
            "(MiniLM cosine; for a near copy, difflib's ratio; titles and names left out) to every "
            "sentence of the cited abstract than `PAPERQA_CLAIM_MIN_SIMILARITY` "
            f"(shipped {claims['shipped']:g}; the F1-best threshold on the dev sentences is "
            f"{claims['calibrated']:g}). Unsupported = positive:",
            "",
            rp.table(["sentences of", "n", "labelled unsupported", "flagged", "precision", "recall"], rows),
            "",
            rp.table(
                ["sentences of", "origin", "n", "labelled unsupported", "flagged", "checker agrees"],
                origin_rows,
            ),
            "",
            "Targets (test): recall on corrupted and unsupported sentences ≥ 0.90, precision ≥ 0.90.",
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
        "- The `extract` and `compose` strategies cite the papers `app.answering.compose.select_papers` "
        "picks (retrieval's first for a question asking for one paper, those whose evidence clears "
        "the bar for one asking for several), so their citation figures measure retrieval and that "
        "choice together; with `generate`, the model decides what to cite.",
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


def followups_section(suite: Suite, result: Mapping[str, Any]) -> list[str]:
    """The follow-up tuning questions (FOLLOWUPS): the shipped config, and the weights of a
    follow-up joined to the answer before it compared (each set that ran)."""
    shipped = result["local_default"]
    rows = []
    by_weight: dict[float, list[Mapping[str, Any]]] = {}
    for name in FOLLOWUPS:
        for config in followup_configs(shipped):
            if (name, config.name) not in suite.rows:
                continue
            s = suite.summary(name, config)
            by_weight.setdefault(config.answer_weight, []).append(s)
            rows.append(
                [
                    f"`{name}`",
                    str(s["n_questions"]),
                    f"{config.answer_weight:g}" + (" (shipped)" if config is shipped else ""),
                    rp.fmt(rp.value(s, "answers", "single_gold_cited")),
                    rp.fmt(rp.value(s, "answers", "citation_precision")),
                    rp.fmt(rp.value(s, "answers", "citation_recall")),
                    rp.fmt(rp.value(s, "answers", "key_fact_match")),
                    rp.fmt(rp.value(s, "answers", "false_refusal")),
                    rp.fmt(rp.value(s, "retrieval", "hit@1")),
                ]
            )
    if not rows:
        return []
    scores = {
        w: score for w, summaries in by_weight.items() if (score := followup_score(summaries)) is not None
    }
    n = max((sum(s["n_questions"] for s in summaries) for summaries in by_weight.values()), default=1)
    margin = 1.0 / max(n, 1)
    picked = pick(list(scores.items()), shipped.answer_weight, tie=margin)
    verdict = (
        "Rule: per weight, the mean over the sets of gold cited, citation precision, citation recall "
        "and key facts ("
        + ", ".join(f"{w:g}: {scores[w]:.3f}" for w in sorted(scores))
        + f"); within one question's worth ({margin:.3f}) of the best, the shipped weight stays. "
        f"Picked: **{picked:g}** (shipped: {shipped.answer_weight:g})."
    )
    header = [
        "set",
        "questions",
        "answer weight",
        "gold cited (1-paper q.)",
        "citation precision",
        "citation recall",
        "key facts",
        "false refusals",
        "hit@1",
    ]
    return [
        "## Follow-ups (dev-followups: tuning)",
        "",
        "The follow-up tuning questions, each with the conversation before it: "
        "`eval/questions/dev-followups.jsonl` (30: a detail of the paper just discussed, another "
        "paper, several others; the answer before each cites its paper as `[1]`) and "
        "`eval/questions/dev-followups2.jsonl` (36, the same kinds, written later by someone who "
        "did not see the system's results; answers without markers, naming their paper by title, "
        "short name or both). A follow-up is retrieved with its own words and with the previous "
        "question joined to it, and is covered when either is; joined to the answer before it, it "
        "is searched once more for ranking only (`PAPERQA_FOLLOWUP_ANSWER_WEIGHT`, its weight in "
        "the fusion: 0 = off; that answer's words never count towards answering rather than "
        "refusing). The papers the previous answer cited (by the name or title before each `[n]`, "
        "or mentioned when it has no markers) are left out of a follow-up asking for other work, "
        "and answer alone one about what was just discussed (`app/answering/followups.py`). "
        "Extract answers (no model), shipped settings but for the answer weight:",
        "",
        rp.table(header, rows),
        "",
        verdict,
        "",
    ]


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
        f"Coverage, held-out test, shipped settings: {coverage_targets(result['coverage']['held_out']['test'])} "
        '(see "Coverage: answer or refuse").',
        "",
        "## Recommended defaults",
        "",
        recommended_section(
            rec.config,
            rec.reasons,
            dev_rec,
            dev_default,
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
        "service's own queries (`app.retrieval.queries.standalone_queries`: a follow-up also searches with the "
        "previous user turn joined to it, and, for ranking only, joined to the answer before it "
        "(`app.answering.condense.context_for`); `cond-off` = the raw question only; `cond-llm` = the "
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
        "## Answer strategies",
        "",
        strategies_section(suite, result),
        "",
        "## Evidence settings",
        "",
        evidence_section(result.get("evidence")),
        "",
        "## Claim check",
        "",
        claims_section(result.get("claims")),
        "",
        "## Coverage: answer or refuse",
        "",
        coverage_section(result["coverage"]),
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
        *followups_section(suite, result),
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
