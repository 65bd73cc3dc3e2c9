"""Rows in, results out: per-config summaries (JSON), Markdown tables, and a comparison chart (PNG)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from eval import metrics as m
from eval.questions import TYPES

Row = Mapping[str, Any]
Summary = dict[str, Any]

RETRIEVAL_METRICS = (
    "hit@1",
    "hit@3",
    "hit@5",
    "hit@10",
    "recall@3",
    "recall@5",
    "recall@8",
    "recall@10",
    "mrr@10",
    "ndcg@10",
    "floor_oos_refused",
    "floor_false_refusal",
)
ANSWER_METRICS = (
    "citation_precision",
    "citation_recall",
    "cites_any",
    "hallucinated_citations",
    "refusal_correct",
    "oos_refused",
    "false_refusal",
    "key_fact_match",
    "context_key_facts",
    "single_gold_cited",
    "unsupported_replaced",
    "sentences_shipped",
    "shipped_unsupported",
    "trimmed",
    "judge_faithfulness",
    "judge_relevance",
)
LATENCY_STAGES = {
    "search_ms": ("timings", "search_ms"),  # retrieval part, measured by the evaluator
    "condense_ms": ("answer_timings", "condense_ms"),
    "retrieve_ms": ("answer_timings", "retrieve_ms"),
    "generate_ms": ("answer_timings", "generate_ms"),
    "first_token_ms": ("answer_timings", "first_token_ms"),
    "total_ms": ("answer_timings", "total_ms"),
    "wall_ms": ("wall_ms",),  # answer part seen from the evaluator (HTTP included with --url)
}
ANSWERABLE_TYPES = tuple(t for t in TYPES if t != "out_of_scope")
METRIC_LABELS = {
    "hit@1": "hit@1",
    "hit@3": "hit@3",
    "hit@5": "hit@5",
    "hit@10": "hit@10",
    "recall@3": "R@3",
    "recall@5": "R@5",
    "recall@8": "R@8",
    "recall@10": "R@10",
    "mrr@10": "MRR@10",
    "ndcg@10": "nDCG@10",
    "citation_precision": "cit. precision",
    "citation_recall": "cit. recall",
    "cites_any": "cites ≥1",
    "hallucinated_citations": "halluc. cit.",
    "refusal_correct": "refusal correct",
    "oos_refused": "OOS refused",
    "false_refusal": "false refusals",
    "key_fact_match": "key facts",
    "context_key_facts": "key facts in sources",
    "single_gold_cited": "gold cited (1-paper q.)",
    "unsupported_replaced": "sentences replaced or dropped",
    "sentences_shipped": "sentences",
    "shipped_unsupported": "unsupported shipped",
    "trimmed": "trimmed",
    "judge_faithfulness": "judge faithful. (1-5)",
    "judge_relevance": "judge relev. (1-5)",
}


# --- summaries ---------------------------------------------------------------------------------
def _get(row: Row, path: Sequence[str]) -> Any:
    value: Any = row
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def summarize_config(rows: Sequence[Row], config: Mapping[str, Any]) -> Summary:
    """One config on one question set: metric means per type, latency percentiles, tokens."""
    if not rows:
        raise ValueError("no rows to summarise")
    answered = [r for r in rows if "answer" in r or "error" in r]
    summary: Summary = {
        "set": rows[0]["set"],
        "name": rows[0]["config"],
        "label": rows[0].get("label", rows[0]["config"]),
        "config": dict(config),
        "n_questions": len(rows),
        "types": {
            t: sum(1 for r in rows if r["type"] == t) for t in TYPES if any(r["type"] == t for r in rows)
        },
        "retrieval": m.aggregate(rows, RETRIEVAL_METRICS),
        "top_similarity": {
            "answerable": m.latency_summary(r["top_similarity"] for r in rows if r["type"] != "out_of_scope"),
            "out_of_scope": m.latency_summary(
                r["top_similarity"] for r in rows if r["type"] == "out_of_scope"
            ),
        },
        "latency_ms": {},
    }
    # Retrieval metrics over answerable questions only (out-of-scope ones have no gold).
    summary["retrieval"]["answerable"] = summary["retrieval"].pop("all")
    for stage, path in LATENCY_STAGES.items():
        values = [_get(r, path) for r in rows]
        if any(v is not None for v in values):
            summary["latency_ms"][stage] = m.latency_summary(values)
    if answered:
        summary["answers"] = m.aggregate(answered, ANSWER_METRICS)
        usage = [r.get("usage") or {} for r in answered if not r.get("refused")]
        counted = sorted({u.get("counted_by", "none") for u in usage} - {"none"})
        summary["tokens"] = {
            "answers_with_llm": sum(1 for u in usage if u.get("counted_by", "none") != "none"),
            "prompt_mean": m.mean(u.get("prompt_tokens") for u in usage if u.get("counted_by") != "none"),
            "completion_mean": m.mean(
                u.get("completion_tokens") for u in usage if u.get("counted_by") != "none"
            ),
            "total": sum(int(u.get("total_tokens") or 0) for u in usage),
            "counted_by": counted,
        }
        summary["errors"] = sum(1 for r in answered if r.get("error"))
        summary["fallbacks"] = sum(1 for r in answered if r.get("fallback_reason"))
        summary["hallucinated_total"] = sum(
            int(_get(r, ("metrics", "hallucinated_citations")) or 0) for r in answered
        )
        summary["dropped_citations_total"] = sum(int(r.get("dropped_citations") or 0) for r in answered)
    return summary


def summarize(rows: Iterable[Row], configs: Mapping[str, Mapping[str, Any]]) -> list[Summary]:
    """Group rows by (set, config) in first-seen order and summarise each group."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row["set"], row["config"]), []).append(row)
    return [summarize_config(group, configs.get(name, {"name": name})) for (_, name), group in groups.items()]


def value(summary: Mapping[str, Any], section: str, metric: str, group: str = "answerable") -> float | None:
    """A mean from a summary, or None (``group`` is a type, ``answerable`` or ``all``)."""
    if section == "answers" and group == "answerable":
        group = "all"
    cell = summary.get(section, {}).get(group, {}).get(metric)
    return cell.get("mean") if cell else None


# --- Markdown ----------------------------------------------------------------------------------
def fmt(x: float | int | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    return f"{x:.{digits}f}"


def fmt_ms(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x / 1000:.1f} s" if x >= 10_000 else f"{x:.0f} ms"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def retrieval_by_type(summary: Mapping[str, Any]) -> str:
    metrics = ("hit@1", "hit@5", "hit@10", "recall@5", "recall@10", "mrr@10", "ndcg@10")
    groups = [t for t in ANSWERABLE_TYPES if t in summary["retrieval"]] + ["answerable"]
    rows = []
    for group in groups:
        n = summary["retrieval"][group]["hit@5"]["n"]
        rows.append(
            [
                f"**{group}**" if group == "answerable" else group,
                str(n),
                *(fmt(value(summary, "retrieval", k, group)) for k in metrics),
            ]
        )
    return table(["type", "n", *(METRIC_LABELS[k] for k in metrics)], rows)


def answers_by_type(summary: Mapping[str, Any]) -> str:
    metrics = [
        "citation_precision",
        "citation_recall",
        "cites_any",
        "key_fact_match",
        "context_key_facts",
        "refusal_correct",
        "false_refusal",
        "oos_refused",
        "hallucinated_citations",
    ]
    if any(summary["answers"]["all"].get(k, {}).get("n") for k in ("judge_faithfulness", "judge_relevance")):
        metrics += ["judge_faithfulness", "judge_relevance"]
    groups = [t for t in TYPES if t in summary["answers"]] + ["all"]
    rows = []
    for group in groups:
        cells = summary["answers"][group]
        rows.append(
            [
                f"**{group}**" if group == "all" else group,
                str(summary["types"].get(group, summary["n_questions"])),
                *(fmt(cells[k]["mean"]) for k in metrics),
            ]
        )
    return table(["type", "n", *(METRIC_LABELS[k] for k in metrics)], rows)


def latency_table(summary: Mapping[str, Any]) -> str:
    rows = [
        [stage, str(s["n"]), fmt_ms(s["p50"]), fmt_ms(s["p95"]), fmt_ms(s["mean"])]
        for stage, s in summary["latency_ms"].items()
    ]
    return table(["stage", "n", "p50", "p95", "mean"], rows)


def tokens_line(summary: Mapping[str, Any]) -> str:
    t = summary.get("tokens")
    if not t or not t["answers_with_llm"]:
        return "Tokens: no LLM call (extractive answers or refusals)."
    return (
        f"Tokens ({', '.join(t['counted_by'])}-counted) over {t['answers_with_llm']} LLM answers: "
        f"prompt {fmt(t['prompt_mean'], 0)} and completion {fmt(t['completion_mean'], 0)} per answer "
        f"on average, {t['total']} in all."
    )


def config_section(summary: Mapping[str, Any], level: int = 3) -> str:
    h = "#" * level
    parts = [
        f"{h} `{summary['label']}` on {summary['set']} ({summary['n_questions']} questions)",
        "",
        f"Config: `{summary['name']}`",
        "",
        "Retrieval (first 10 papers, answerable questions):",
        "",
        retrieval_by_type(summary),
        "",
    ]
    floor = summary["config"].get("relevance_floor")
    parts += [
        f"Relevance floor {floor:g} on the retrieval part: out-of-scope refused "
        f"{fmt(value(summary, 'retrieval', 'floor_oos_refused', 'out_of_scope'))}, answerable "
        f"wrongly refused {fmt(value(summary, 'retrieval', 'floor_false_refusal'))}.",
        "",
    ]
    if "answers" in summary:
        parts += [
            "Answers:",
            "",
            answers_by_type(summary),
            "",
            tokens_line(summary),
            "",
            f"Hallucinated citations: {summary['hallucinated_total']}; citation markers dropped by "
            f"the checker: {summary['dropped_citations_total']}; LLM fallbacks to extractive: "
            f"{summary['fallbacks']}; errors: {summary['errors']}.",
            "",
        ]
    parts += ["Latency (nearest-rank percentiles):", "", latency_table(summary), ""]
    return "\n".join(parts)


def retrieval_comparison(summaries: Sequence[Mapping[str, Any]]) -> str:
    metrics = ("hit@1", "hit@5", "hit@10", "recall@5", "recall@10", "mrr@10", "ndcg@10")
    rows = []
    for s in summaries:
        search = s["latency_ms"].get("search_ms", {})
        rows.append(
            [
                f"`{s['label']}`",
                *(fmt(value(s, "retrieval", k)) for k in metrics),
                fmt(value(s, "retrieval", "ndcg@10", "followup")),
                fmt_ms(search.get("p50")),
                fmt_ms(search.get("p95")),
            ]
        )
    return table(
        ["config", *(METRIC_LABELS[k] for k in metrics), "nDCG@10 followup", "search p50", "search p95"], rows
    )


def answer_comparison(summaries: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for s in summaries:
        if "answers" not in s:
            continue
        total = s["latency_ms"].get("total_ms", {})
        gen = s["latency_ms"].get("generate_ms", {})
        tokens = s.get("tokens") or {}
        rows.append(
            [
                f"`{s['label']}`",
                fmt(value(s, "answers", "citation_precision")),
                fmt(value(s, "answers", "citation_recall")),
                str(s["hallucinated_total"]),
                fmt(value(s, "answers", "oos_refused", "out_of_scope")),
                fmt(value(s, "answers", "false_refusal")),
                fmt(value(s, "answers", "key_fact_match", "detail")),
                fmt(value(s, "answers", "key_fact_match")),
                fmt(value(s, "answers", "context_key_facts")),
                fmt_ms(gen.get("p50")),
                fmt_ms(gen.get("p95")),
                fmt_ms(total.get("p50")),
                fmt_ms(total.get("p95")),
                fmt(tokens.get("prompt_mean"), 0) if tokens.get("answers_with_llm") else "–",
                fmt(tokens.get("completion_mean"), 0) if tokens.get("answers_with_llm") else "–",
            ]
        )
    return table(
        [
            "config",
            "cit. precision",
            "cit. recall",
            "halluc. cit.",
            "refusal acc. (OOS)",
            "false refusals",
            "key facts (detail)",
            "key facts (all)",
            "key facts in sources",
            "generate p50",
            "generate p95",
            "total p50",
            "total p95",
            "prompt tok.",
            "compl. tok.",
        ],
        rows,
    )


def render_run(summaries: Sequence[Mapping[str, Any]], title: str, notes: str = "") -> str:
    """The run folder's report.md: comparison tables per set, then every config in detail."""
    parts = [f"# {title}", ""]
    if notes:
        parts += [notes, ""]
    for set_name in dict.fromkeys(s["set"] for s in summaries):
        group = [s for s in summaries if s["set"] == set_name]
        parts += [f"## {set_name}: retrieval", "", retrieval_comparison(group), ""]
        if any("answers" in s for s in group):
            parts += [f"## {set_name}: answers", "", answer_comparison(group), ""]
    parts += ["## Per configuration", ""]
    parts += [config_section(s) for s in summaries]
    return "\n".join(parts)


def short_label(label: str) -> str:
    return label.removesuffix(":retrieval-only")


# --- chart -------------------------------------------------------------------------------------
def chart(
    summaries: Sequence[Mapping[str, Any]],
    path: Path,
    title: str = "",
    answer_summaries: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Grouped bars: retrieval quality of ``summaries`` (top) and answer quality (bottom) of
    ``answer_summaries`` (default: those of ``summaries`` with answers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if answer_summaries is None:
        answer_summaries = [s for s in summaries if "answers" in s]
    panels = [(list(summaries), ("hit@5", "mrr@10", "ndcg@10"), "Retrieval (answerable questions)")]
    if answer_summaries:
        panels.append(
            (
                list(answer_summaries),
                (
                    "citation_precision",
                    "citation_recall",
                    "key_fact_match",
                    "context_key_facts",
                    "oos_refused",
                ),
                "Answers (refusal accuracy over out-of-scope questions, the rest over answerable ones)",
            )
        )
    widest = max(len(group) for group, _, _ in panels)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(9.0, 0.75 * widest + 4), 4.6 * len(panels)), squeeze=False
    )
    for ax, (group, keys, panel_title) in zip(axes[:, 0], panels, strict=True):
        width = 0.8 / len(keys)
        for i, key in enumerate(keys):
            section = "retrieval" if key in RETRIEVAL_METRICS else "answers"
            where = "out_of_scope" if key == "oos_refused" else "answerable"
            heights = [value(s, section, key, where) or 0.0 for s in group]
            xs = [j + (i - (len(keys) - 1) / 2) * width for j in range(len(group))]
            label = "refusal acc. (OOS)" if key == "oos_refused" else METRIC_LABELS[key]
            ax.bar(xs, heights, width, label=label)
        ax.set_xticks(range(len(group)))
        ax.set_xticklabels(
            [f"{short_label(s['label'])} ({s['set']})" for s in group], rotation=35, ha="right", fontsize=8
        )
        ax.set_ylim(0, 1.05)
        ax.set_title(panel_title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# --- files -------------------------------------------------------------------------------------
def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class RowWriter:
    """Appends each row to ``questions.jsonl`` as soon as it is made (a crash loses nothing)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle = path.open("a", encoding="utf-8")

    def __call__(self, row: Mapping[str, Any]) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def write_run(
    run_dir: Path,
    summaries: Sequence[Mapping[str, Any]],
    title: str,
    notes: str = "",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """summary.json, report.md and chart.png in ``run_dir`` (questions.jsonl is written by rows)."""
    outputs = {
        "summary": write_json(run_dir / "summary.json", {**(extra or {}), "runs": list(summaries)}),
        "chart": chart(summaries, run_dir / "chart.png", title),
    }
    report = run_dir / "report.md"
    report.write_text(render_run(summaries, title, notes), encoding="utf-8")
    outputs["report"] = report
    return outputs
