"""The evaluation end to end on a small index: the gold papers of a few questions plus 30 others.

Real embedding model, real Chroma (in ``tmp_path``), extractive answers (no LLM), so it runs in
seconds once the model is loaded; the bundled corpus is never re-indexed here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.records import normalize_title
from app.core.settings import Settings
from eval import tables as rp
from eval.config import default_config, parse_config
from eval.questions import load_questions, select
from eval.runner import Runner, config_record, run_all
from ingest.parsers import corpus_files, read_file
from ingest.pipeline import IngestSummary, dedupe, ingest

pytestmark = pytest.mark.slow

NUMBERS = ("001", "013", "033", "041", "049")  # lookup, detail, out_of_scope, keyword, followup
N_OTHERS = 30


def hermetic_settings(**values: object) -> Settings:
    """Settings from defaults and ``values`` only (as ``settings_factory``, but module-scoped)."""
    import os

    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("PAPERQA_") or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
                mp.delenv(name)
        return Settings(_env_file=None, **values)


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, corpus_dir: Path, embed_model):
    """(settings, dev questions, test questions): a JSONL corpus of gold + other papers, ingested."""
    dev = select(load_questions("dev"), ids=[f"dev-{n}" for n in NUMBERS])
    test = select(load_questions("test"), ids=[f"test-{n}" for n in NUMBERS])
    gold = {normalize_title(t) for q in [*dev, *test] for t in q.gold_titles}
    papers = list(dedupe((r for f in corpus_files([corpus_dir]) for r in read_file(f)), IngestSummary()))
    chosen = [p for p in papers if normalize_title(p.title) in gold]
    chosen += [p for p in papers if normalize_title(p.title) not in gold][:N_OTHERS]
    assert len({normalize_title(p.title) for p in chosen}) == len(gold) + N_OTHERS

    folder = tmp_path_factory.mktemp("eval_small")
    corpus = folder / "small.jsonl"
    corpus.write_text(
        "".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n" for p in chosen),
        encoding="utf-8",
    )
    base = hermetic_settings(chroma_path=folder / "chroma", corpus_paths=[corpus])
    summary = ingest(default_config().settings(base), embed_model=embed_model, progress=False)
    assert summary.new == len(chosen)
    return base, dev, test


def _in_unit_interval(summary: dict) -> None:
    for section in ("retrieval", "answers"):
        for group, cells in summary.get(section, {}).items():
            for metric, cell in cells.items():
                counts = (
                    "hallucinated_citations",
                    "sentences_shipped",
                    "unsupported_replaced",
                    "shipped_unsupported",
                )
                if metric.startswith("judge_") or metric in counts or cell["mean"] is None:
                    continue
                assert 0.0 <= cell["mean"] <= 1.0, (section, group, metric, cell)


async def test_retrieval_comparison_with_extractive_answers(small_index, embed_model, tmp_path: Path) -> None:
    base, dev, _ = small_index
    configs = [parse_config("bm25:extractive"), parse_config("hybrid:extractive")]
    runner = Runner(base, embed_model=embed_model, progress=False, log=lambda _: None)
    out = tmp_path / "run"
    writer = rp.RowWriter(out / "questions.jsonl")
    try:
        results = await run_all(runner, configs, dev, "dev", writer)
    finally:
        writer.close()
        await runner.aclose()

    rows = rp.read_rows(out / "questions.jsonl")
    assert len(rows) == len(configs) * len(dev) == sum(len(r) for r in results.values())
    for row in rows:
        assert row["ranked_titles"] and len(row["ranked_titles"]) <= 10
        assert 0.0 <= row["top_similarity"] <= 1.0
        assert "error" not in row, row.get("error")
        assert row["metrics"]["hallucinated_citations"] == 0
        if row["type"] == "followup":
            assert len(row["queries"]) == 2  # condensed as the service does
    # The keyword question's paper is in this small index: both modes find it.
    keyword = [r for r in rows if r["id"] == "dev-041"]
    assert all(r["metrics"]["hit@10"] == 1.0 for r in keyword)

    summaries = rp.summarize(rows, {c.name: config_record(c) for c in configs})
    assert [s["name"] for s in summaries] == [c.name for c in configs]
    for summary in summaries:
        _in_unit_interval(summary)
        assert summary["hallucinated_total"] == 0
        assert summary["latency_ms"]["search_ms"]["p50"] is not None
    outputs = rp.write_run(out, summaries, "test run")
    data = json.loads(outputs["summary"].read_text(encoding="utf-8"))
    assert len(data["runs"]) == 2
    markdown = outputs["report"].read_text(encoding="utf-8")
    assert configs[0].name in markdown and "nDCG@10" in markdown
    assert outputs["chart"].read_bytes().startswith(b"\x89PNG")


async def test_report_suite_writes_the_document(small_index, embed_model, tmp_path: Path) -> None:
    from eval.document import render
    from eval.suite import Suite

    base, dev, test = small_index
    runner = Runner(base, embed_model=embed_model, progress=False, log=lambda _: None)
    writer = rp.RowWriter(tmp_path / "questions.jsonl")
    # A few coverage tuning questions (out-of-scope and answerable), fitted on with dev.
    extra = select(load_questions("dev-coverage"), ids=["devc-001", "devc-031", "devc-039", "devc-040"])
    answers = select(load_questions("dev-answers"), ids=["deva-001", "deva-049"])
    followups = {
        "dev-followups": select(load_questions("dev-followups"), ids=["devf-001", "devf-023"]),
        "dev-followups2": select(load_questions("dev-followups2"), ids=["devg-001", "devg-015"]),
    }
    suite = Suite(
        runner,
        dev,
        test,
        [200],
        writer,
        local_backend="extractive",
        coverage_extra=extra,
        answers_extra=answers,
        followups_extra=followups,
    )
    try:
        result = await suite.run()
    finally:
        writer.close()
        await runner.aclose()
    sweep = result["evidence"]  # dev's answerable questions and the tuning extras, never test
    answerable = sum(q.answerable for q in [*dev, *extra, *answers])
    assert sweep["questions"] == answerable and sweep["top"] and sweep["settings"] > 100
    assert sweep["top"][0][1]["score"] >= sweep["shipped"]["score"]
    coverage = result["coverage"]
    assert set(coverage["cross_validated"]) == {"logistic", "rules"}
    assert 0.0 < coverage["held_out"]["test"].balanced_accuracy <= 1.0
    assert [a["left_out"] for a in coverage["held_out"]["ablation"]] == [
        "(none)",
        "names",
        "dense",
        "share",
        "bm25",
        "absent",
        "dense_gap",
    ]
    assert coverage["extra"] and coverage["held_out"]["extra"].answerable == 2
    summaries = [suite.summary(s, suite.configs[name]) for (s, name) in suite.rows]
    for summary in summaries:
        _in_unit_interval(summary)
    document = render(suite, result, "run", dev, test)
    for heading in (
        "## Recommended defaults",
        "## Dev: retrieval",
        "## Coverage: answer or refuse",
        "## Evidence settings",
        "## Dev: answers",
        "## Test (held out): shipped defaults",
        "## Follow-ups (dev-followups: tuning)",
        "| `dev-followups2` | 2 |",
        "Partial run",
        "Dev-coverage, shipped settings",
        "dev + dev-coverage, 5-fold cross-validation",
    ):
        assert heading in document
    chart = rp.chart(summaries, tmp_path / "evaluation.png")
    assert chart.read_bytes().startswith(b"\x89PNG")
