"""The BM25 index built by ingestion and persisted beside the store (issue 14, part 1; fast tier:
the real ingestion and pipeline over a small store with the hashing embedder).

- persistence: ingestion writes it; a service loads it (memory-mapped) and ranks exactly as
  LlamaIndex's ``BM25Retriever`` built in memory over the same chunks did before;
- nothing builds BM25 at service start;
- reload: papers ingested while a service runs are found once the run has swapped in its index;
- mismatch: a missing or stale index is never used and ``/health`` says why; a run killed before
  it finished leaves the last complete index in use, reported as updating, and the next run fixes it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from app.core import lexicon
from app.core.chunks import stored_chunk_node
from app.core.store import get_collections, iter_records, make_client
from app.http.app import create_app
from app.retrieval.lexical import LexicalIndex
from app.services import build_services
from ingest.pipeline import ingest
from tests.corpus_tools import real_papers, write_jsonl
from tests.fakes import HashingEmbedding, count_words
from tests.helpers import app_client

QUERIES = [
    "post-training quantization of vision transformers",
    "calibration set eight-bit weights",
    "linear attention complexity",
    "masked autoencoder",
    "nothing of the sort xyzzy",
]


def ingest_into(settings: Any, papers: list[dict[str, Any]], path: Path) -> Any:
    write_jsonl(path, papers)
    return ingest(settings, [path], progress=False, embed_model=HashingEmbedding(), count_tokens=count_words)


def papers(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"id": p.id, "title": p.title, "abstract": p.abstract} for p in real_papers()[start : start + n]]


@pytest.fixture
def store(settings_factory: Any, tmp_path: Path) -> Any:
    settings = settings_factory(collection="lexicon", embed_model_path="hashing")
    ingest_into(settings, papers(40), tmp_path / "first.jsonl")
    return settings


def chunks_of(settings: Any) -> Any:
    return get_collections(make_client(settings), settings.collection)[0]


def test_ingestion_persists_the_index_beside_the_store(store: Any) -> None:
    root = store.lexical_dir / store.collection
    pointer = lexicon.current(store, store.collection)
    assert pointer is not None and (root / pointer["version"] / "rows.chunk_blob.npy").is_file()
    assert store.lexical_dir == store.chroma_path.with_name("chroma-bm25")
    state, writing = lexicon.store_state(chunks_of(store))
    assert state == pointer["state"] and writing is None
    assert not list((root / pointer["version"]).glob("corpus*")), "chunk texts stay in Chroma"


def test_the_loaded_index_ranks_as_llamaindex_did(store: Any) -> None:
    """Same chunks, same scores, same order as LlamaIndex's BM25Retriever over the stored chunks."""
    from llama_index.core.schema import QueryBundle
    from llama_index.retrievers.bm25 import BM25Retriever

    chunks = chunks_of(store)
    nodes = [
        stored_chunk_node(r["id"], r["documents"] or "", r["metadatas"])
        for r in iter_records(chunks, include=["documents", "metadatas"])
    ]
    reference = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=8)
    index = LexicalIndex(store, chunks)
    assert index.status.status == "ok" and index.n_chunks == len(nodes)
    for query in QUERIES:
        expected = [
            (h.node.node_id, round(h.score or 0.0, 5)) for h in reference.retrieve(QueryBundle(query))
        ]
        expected = [e for e in expected if e[1] > 0]
        got = [(h.node.node_id, round(h.score or 0.0, 5)) for h in index.search(query, 8)]
        assert got == expected, query
        assert all(h.node.get_content() for h in index.search(query, 8))


def test_nothing_builds_bm25_at_service_start(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import bm25s

    def forbidden(*_: Any, **__: Any) -> None:
        raise AssertionError("the service built a BM25 index")

    monkeypatch.setattr(bm25s.BM25, "index", forbidden)
    services = build_services(store, embed_model=HashingEmbedding(), load_llm=False)
    assert services.retriever.lexical.status.status == "ok"
    assert services.retriever.search(["quantization of vision transformers"], "bm25", 5).hits


def test_a_new_run_is_picked_up_by_a_running_instance(store: Any, tmp_path: Path) -> None:
    index = LexicalIndex(store, chunks_of(store), read_state=lambda: lexicon.store_state(chunks_of(store)))
    before, version = index.n_chunks, index.version
    extra = papers(10, start=200)
    ingest_into(store, extra, tmp_path / "more.jsonl")
    assert index.check().version != version, "the new index is seen"
    # Until it reloads, the old (memory-mapped) version still answers though its folder is gone.
    assert not (store.lexical_dir / store.collection / str(version)).exists()
    assert index.search("vision transformers", 3)
    assert index.reload() > before
    found = {h.node.metadata["paper_id"] for h in index.search(extra[0]["title"], 5)}
    assert extra[0]["id"] in found


def test_a_missing_index_is_reported_and_not_used(store: Any) -> None:
    shutil.rmtree(store.lexical_dir)
    index = LexicalIndex(store, chunks_of(store))
    assert index.status.status == "missing" and "python -m ingest" in index.status.detail
    assert index.search("vision transformers", 5) == [] and index.n_chunks == 0


def test_an_index_of_another_state_is_reported_stale_and_not_used(store: Any) -> None:
    lexicon.mark_state(chunks_of(store), "someone-else")
    index = LexicalIndex(store, chunks_of(store))
    assert index.status.status == "stale" and index.search("vision transformers", 5) == []


async def test_health_reports_a_stale_index_and_search_goes_on_dense(store: Any) -> None:
    lexicon.mark_state(chunks_of(store), "someone-else")
    services = build_services(store, embed_model=HashingEmbedding(), load_llm=False)
    async with app_client(create_app(services=services)) as client:
        health = (await client.get("/health")).json()
        search = await client.get("/search", params={"q": "quantization of vision transformers"})
    assert (
        health["lexical_index"]["status"] == "stale"
        and "python -m ingest" in health["lexical_index"]["detail"]
    )
    assert search.status_code == 200 and search.json()["results"]


def test_a_run_killed_midway_leaves_the_last_index_in_use_until_the_next_run(
    store: Any, tmp_path: Path
) -> None:
    chunks = chunks_of(store)
    version = lexicon.current(store, store.collection)["version"]
    lexicon.mark_writing(chunks)  # what a run does before its first write; killed right after
    index = LexicalIndex(store, chunks_of(store))
    assert index.status.status == "updating" and index.version == version
    assert index.search("vision transformers", 3), "the last complete index is still used"
    summary = ingest_into(store, papers(40), tmp_path / "again.jsonl")  # nothing new to write
    assert summary.new == 0 and "rebuilt" in summary.lexical
    assert LexicalIndex(store, chunks_of(store)).status.status == "ok"


def test_if_missing_builds_the_index_of_an_existing_store(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store built before the index was persisted: `make run` (python -m ingest --if-missing)
    builds it without re-ingesting."""
    from ingest.__main__ import _has_papers

    shutil.rmtree(store.lexical_dir)
    assert _has_papers(store)
    assert lexicon.current(store, store.collection) is not None
    assert LexicalIndex(store, chunks_of(store)).status.status == "ok"


def test_status_of_is_pure() -> None:
    pointer = {"version": "v-1", "state": "s1", "chunks": 3, "built_at": "t"}
    assert lexicon.status_of(None, "s1", None).status == "missing"
    assert lexicon.status_of(pointer, "s1", None).status == "ok"
    assert lexicon.status_of(pointer, "s2", None).status == "stale"
    assert lexicon.status_of(pointer, None, None).status == "stale"
    assert lexicon.status_of(pointer, "s1", "run-7").status == "updating"
    assert lexicon.status_of(pointer, "s2", "run-7").status == "stale"


def test_locate_is_isin_on_sorted_postings() -> None:
    """The binary search that replaced ``np.isin`` (40 ms -> 2 ms a search at 100k papers) agrees
    with it on every case, empty postings, rows past either end and rows of another integer type
    included, and says where each held row is."""
    import numpy as np

    from app.retrieval.lexical import locate

    rng = np.random.default_rng(7)
    for _ in range(500):
        postings = np.unique(rng.integers(0, 200, size=int(rng.integers(0, 60)))).astype(np.int32)
        rows = rng.integers(0, 220, size=int(rng.integers(1, 6)))  # int64, as row tables give
        held, at = locate(postings, rows)
        assert held.tolist() == np.isin(rows, postings).tolist()
        assert postings[at[held]].tolist() == rows[held].tolist()


def test_coverage_terms_score_a_paper_as_scoring_every_chunk_did(store: Any) -> None:
    """The coverage signals read a paper's BM25 score at its own rows: the same float32 sums as
    bm25s's scores of every chunk, bit for bit, and the same share of the question's terms."""
    import bm25s
    import numpy as np

    index = LexicalIndex(store, chunks_of(store))
    loaded = index._loaded
    assert loaded is not None
    bm25 = loaded.bm25
    for query in QUERIES + ["quantization quantization of transformers, vision and language"]:
        papers = [h.node.metadata["paper_id"] for h in index.search(query, 20)][:5] + ["absent-paper"]
        got = index.term_evidence(query, papers)
        terms = [
            t
            for t in bm25s.tokenize(
                query, stopwords="en", stemmer=lexicon.stemmer(), return_ids=False, show_progress=False
            )[0]
            if t
        ]
        terms = list(dict.fromkeys(terms))
        known = [bm25.vocab_dict[t] for t in terms if t in bm25.vocab_dict]
        every = bm25.get_scores_from_ids(known) if known else np.zeros(index.n_chunks, np.float32)
        idf = {t: index.idf(t) for t in terms}
        indptr, indices = bm25.scores["indptr"], bm25.scores["indices"]
        for paper_id in papers[:-1]:
            rows = np.asarray(loaded.rows.rows_of(paper_id))
            assert got.bm25[paper_id] == float(every[rows].max()) / sum(idf.values()), (query, paper_id)
            held = [
                t
                for t in terms
                if t in bm25.vocab_dict
                and np.isin(rows, indices[indptr[bm25.vocab_dict[t]] : indptr[bm25.vocab_dict[t] + 1]]).any()
            ]
            assert got.share[paper_id] == pytest.approx(sum(idf[t] for t in held) / sum(idf.values()))
        assert "absent-paper" not in got.bm25


@pytest.mark.parametrize("seed", range(20))
def test_top_rows_is_a_full_sort_of_the_positive_scores(seed: int) -> None:
    """Best first, ties by row, positive scores only, whatever the share of zeros and ties."""
    import numpy as np

    from app.retrieval.lexical import top_rows

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 50_000))
    levels = rng.choice([3, 50, 10_000])  # few distinct scores: many ties
    scores = (rng.integers(0, levels, n) / levels).astype(np.float32)
    scores[rng.random(n) < rng.random()] = 0.0
    for k in (1, 5, 50, n + 3):
        expected = [r for r in sorted(range(n), key=lambda r: (-scores[r], r)) if scores[r] > 0][:k]
        assert top_rows(scores, k).tolist() == expected, (seed, n, k)


def test_row_tables_find_every_chunk_and_paper_memory_mapped(tmp_path: Path) -> None:
    """Row -> chunk id and paper -> rows as arrays: what the lists and dict gave, for ids with
    non-ASCII characters, papers whose rows are not contiguous, and papers the index lacks."""
    import numpy as np

    from app.core.lexicon import Rows

    paper_ids = ["arxiv:2301.1", "doi:10.1/é", "arxiv:2301.1", "b", "doi:10.1/é", "arxiv:2301.1", "a"]
    chunk_ids = [f"{p}#{i}-ß" for i, p in enumerate(paper_ids)]
    Rows.from_lists(chunk_ids, paper_ids).save(tmp_path)
    rows = Rows.load(tmp_path)
    assert isinstance(rows.chunk_offsets, np.memmap)
    assert len(rows) == 7 and rows.n_papers == 4
    assert [rows.chunk_id(r) for r in range(7)] == chunk_ids
    for paper_id in set(paper_ids):
        expected = [r for r, p in enumerate(paper_ids) if p == paper_id]
        assert rows.rows_of(paper_id).tolist() == expected, paper_id
    for missing in ("", "arxiv:2301", "arxiv:2301.10", "c", "zzz"):
        assert rows.rows_of(missing) is None


def test_an_index_written_with_rows_json_is_still_read(tmp_path: Path) -> None:
    import json

    from app.core.lexicon import Rows

    (tmp_path / "rows.json").write_text(
        json.dumps({"chunk_ids": ["p1#0", "p2#0", "p1#1"], "paper_ids": ["p1", "p2", "p1"]})
    )
    rows = Rows.load(tmp_path)
    assert [rows.chunk_id(r) for r in range(len(rows))] == ["p1#0", "p2#0", "p1#1"]
    assert rows.rows_of("p1").tolist() == [0, 2] and rows.rows_of("p3") is None


def test_empty_row_tables(tmp_path: Path) -> None:
    from app.core.lexicon import Rows

    Rows.from_lists([], []).save(tmp_path)
    rows = Rows.load(tmp_path)
    assert len(rows) == 0 and rows.n_papers == 0 and rows.rows_of("p") is None


def test_an_index_with_rows_json_is_rebuilt_by_the_next_run(store: Any) -> None:
    """An index written before the row arrays works, and the next ingestion run (even with nothing
    to ingest) rebuilds it with them."""
    import json

    from ingest.pipeline import finish_lexical_index

    pointer = lexicon.current(store, store.collection)
    directory = store.lexical_dir / store.collection / pointer["version"]
    rows = lexicon.Rows.load(directory)
    paper_of = {
        r["id"]: r["metadatas"]["paper_id"] for r in iter_records(chunks_of(store), include=["metadatas"])
    }
    chunk_ids = [rows.chunk_id(r) for r in range(len(rows))]
    legacy = {"chunk_ids": chunk_ids, "paper_ids": [paper_of[c] for c in chunk_ids]}
    for array in directory.glob("rows.*.npy"):
        array.unlink()
    (directory / "rows.json").write_text(json.dumps(legacy))
    assert lexicon.has_legacy_rows(store, pointer)
    index = LexicalIndex(store, chunks_of(store))
    assert index.status.status == "ok" and index.search("transformer attention", 3)
    some_paper = legacy["paper_ids"][0]
    assert index.first_chunk(some_paper) is not None
    assert "rebuilt" in finish_lexical_index(store, chunks_of(store), changed=False)
    assert not lexicon.has_legacy_rows(store, lexicon.current(store, store.collection))
    assert "up to date" in finish_lexical_index(store, chunks_of(store), changed=False)
