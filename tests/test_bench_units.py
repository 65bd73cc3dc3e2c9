"""Pure helpers of the benchmarks: percentiles and the figures read back from result files."""

from __future__ import annotations

import numpy as np

from bench.common import percentile
from bench.report import pipeline_seconds, verdict


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert percentile([], 50) != percentile([], 50)  # NaN


def test_pipeline_seconds_reads_the_summary_line() -> None:
    line = (
        "files 1, entries read 300, distinct papers 300 (new 300, updated 0, unchanged 0), "
        "duplicate entries 0, chunks written 562, 5.8 s"
    )
    assert pipeline_seconds(line) == 5.8
    assert pipeline_seconds("no timing here") is None


def test_verdict() -> None:
    assert verdict(12.0, 15.0) == "met"
    assert verdict(16.0, 15.0) == "**not met**"
    assert verdict(2.1, 2.0, lower_is_better=False) == "met"
    assert verdict(None, 2.0) == "not measured"


def test_timed_stages_times_each_search_and_puts_everything_back() -> None:
    """bench.stages wraps the search's functions only inside its block, one record per search."""
    from app.retrieval import lexical, search
    from bench.stages import timed_stages

    before = (search.PaperRetriever._embed, lexical.top_rows, lexical.LexicalIndex._scores)
    with timed_stages() as stages:
        assert lexical.top_rows is not before[1]
        for _ in range(3):
            stages.begin()
            lexical.top_rows(np.asarray([0.5, 0.0, 2.0], dtype="float32"), 2)
            stages.end(1.0)
        lexical.top_rows(np.zeros(1), 1)  # outside a search: not counted
    assert (search.PaperRetriever._embed, lexical.top_rows, lexical.LexicalIndex._scores) == before
    summary = stages.summary()
    assert set(summary) == {"bm25_top", "total"}
    assert len(stages.searches) == 3 and summary["total"]["p50_ms"] == 1.0
    assert 0 <= summary["bm25_top"]["p95_ms"] < 1000
