"""Ingestion end to end: real embedding model, real Chroma (embedded on disk, and a server).

The bundled corpus is ingested ONCE for this module (about a minute); everything else uses a
small JSONL corpus written into ``tmp_path``, each test in its own store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.embeddings import embedding_identity
from app.core.errors import LayoutMismatch
from app.core.records import paper_id_for
from app.core.store import (
    LAYOUT_KEYS,
    PAPERS_SUFFIX,
    StoreUnavailable,
    get_collections,
    iter_records,
    layout_metadata,
    make_client,
)
from ingest.pipeline import IngestError, IngestSummary, ingest

pytestmark = pytest.mark.slow

LONG_TAIL = " ".join(
    f"Sentence {i} adds detail about ablations, datasets and training schedules for the model."
    for i in range(40)
)

SMALL_CORPUS = [
    {
        "id": "2301.00001v2",
        "title": "Sparse Attention for Long Documents",
        "abstract": "We propose a sparse attention pattern that scales linearly with sequence "
        "length. It matches dense attention on summarisation benchmarks at a fraction of the cost.",
        "authors": ["Ada Lovelace", "Alan Turing"],
        "year": 2023,
    },
    {
        "id": "2302.00002",
        "title": "Tokenizer-Free Language Models",
        "abstract": "Byte-level models avoid tokenizers entirely. We show that with a small "
        "downsampling stack they reach the quality of subword models on translation. " + LONG_TAIL,
        "venue": {"name": "nested dicts are dropped"},
    },
    {
        "title": "Retrieval Augmented Question Answering over Abstracts",
        "abstract": "We answer questions about research papers using only their abstracts, "
        "retrieving passages with a hybrid of dense and lexical search and citing them.",
    },
    {
        "id": "doi:10.1000/example.4",
        "title": "Quantised Embeddings on Laptop CPUs",
        "abstract": "Int8 quantisation of sentence embedders keeps retrieval quality within one "
        "point while halving latency on commodity laptop processors.",
    },
]
SMALL_IDS = [paper_id_for(p.get("id"), p["title"]) for p in SMALL_CORPUS]


def write_jsonl(path: Path, records: list[object]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class StoreView:
    """What a store holds, read back through a fresh client."""

    chunk_count: int
    paper_count: int
    chunks: dict[str, dict]  # id -> {"metadata": ..., "document": ...}
    papers: dict[str, dict]
    layout: dict


def read_store(settings) -> StoreView:
    client = make_client(settings)
    chunks_col, papers_col = get_collections(client, settings.collection)
    chunks = {
        r["id"]: {"metadata": r["metadatas"], "document": r["documents"]}
        for r in iter_records(chunks_col, include=["metadatas", "documents"])
    }
    papers = {
        r["id"]: {"metadata": r["metadatas"], "document": r["documents"]}
        for r in iter_records(papers_col, include=["metadatas", "documents"])
    }
    return StoreView(chunks_col.count(), papers_col.count(), chunks, papers, dict(chunks_col.metadata))


def assert_store_consistent(view: StoreView) -> None:
    """Every chunk belongs to a stored paper's current version; every paper has all its chunks."""
    assert view.chunk_count == len(view.chunks) and view.paper_count == len(view.papers)
    per_paper: dict[str, list[int]] = {}
    for chunk_id, chunk in view.chunks.items():
        meta = chunk["metadata"]
        assert {"paper_id", "title", "content_hash", "chunk_index", "n_chunks"} <= set(meta), chunk_id
        paper = view.papers[meta["paper_id"]]["metadata"]
        assert meta["content_hash"] == paper["content_hash"], f"stale chunk {chunk_id}"
        assert meta["title"] == paper["title"]
        assert chunk_id.startswith(meta["paper_id"] + "#")
        assert chunk["document"]
        per_paper.setdefault(meta["paper_id"], []).append(meta["chunk_index"])
    assert set(per_paper) == set(view.papers)
    for paper_id, indexes in per_paper.items():
        assert sorted(indexes) == list(range(view.papers[paper_id]["metadata"]["n_chunks"]))


# --------------------------------------------------------------------------------------------
# The bundled corpus, ingested once, then re-ingested
# --------------------------------------------------------------------------------------------


@dataclass
class FullRun:
    settings: object
    first: IngestSummary
    after_first: StoreView
    second: IngestSummary
    after_second: StoreView


@pytest.fixture(scope="module")
def full_run(bundled_index, embed_model, count_tokens) -> FullRun:
    """The session's one full ingest of the bundled corpus (``bundled_index``), then a re-run."""
    settings = bundled_index.settings
    kwargs = dict(embed_model=embed_model, count_tokens=count_tokens, progress=False)
    first = bundled_index.summary
    after_first = read_store(settings)
    second = ingest(settings, **kwargs)
    after_second = read_store(settings)
    return FullRun(settings, first, after_first, second, after_second)


def test_full_corpus_summary(full_run: FullRun):
    s = full_run.first
    assert (s.files, s.entries) == (5, 696)
    assert (s.new, s.updated, s.unchanged) == (586, 0, 0)
    assert s.duplicates == 110
    assert s.issues == [] and s.conflicts == []
    assert s.chunks > 586
    assert s.papers == 586
    rendered = s.render()
    assert "distinct papers 586" in rendered and "new 586" in rendered
    assert f"chunks written {s.chunks}" in rendered


def test_full_corpus_store_contents(full_run: FullRun):
    view = full_run.after_first
    assert view.paper_count == 586
    assert view.chunk_count == full_run.first.chunks
    assert_store_consistent(view)
    for chunk in view.chunks.values():
        meta = chunk["metadata"]
        assert meta["paper_id"] and meta["title"] and len(meta["content_hash"]) == 40
    settings = full_run.settings
    assert {key: view.layout[key] for key in LAYOUT_KEYS} == {
        "paperqa_chunk_size": settings.chunk_size,
        "paperqa_chunk_overlap": settings.chunk_overlap,
        "paperqa_embed_model": embedding_identity(settings),
        "paperqa_schema": 1,
    }


def test_full_corpus_nearest_chunk_to_a_title_is_that_paper(full_run: FullRun, embed_model):
    title = "Reduce Information Loss in Transformers for Pluralistic Image Inpainting"
    chunks_col, _ = get_collections(make_client(full_run.settings), full_run.settings.collection)
    result = chunks_col.query(
        query_embeddings=[embed_model.get_query_embedding(title)], n_results=1, include=["metadatas"]
    )
    assert result["metadatas"][0][0]["title"] == title


def test_full_corpus_rerun_is_a_noop(full_run: FullRun):
    s = full_run.second
    assert (s.new, s.updated, s.unchanged, s.chunks) == (0, 0, 586, 0)
    assert (s.entries, s.duplicates) == (696, 110)
    assert full_run.after_second.paper_count == 586
    assert full_run.after_second.chunk_count == full_run.first.chunks
    assert full_run.after_second.chunks.keys() == full_run.after_first.chunks.keys()
    assert full_run.after_second.papers == full_run.after_first.papers


# --------------------------------------------------------------------------------------------
# A small JSONL corpus, one store per test
# --------------------------------------------------------------------------------------------


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "small.jsonl", SMALL_CORPUS)


@pytest.fixture
def run(embed_model, count_tokens):
    """``run(settings, paths, **kw)``: ingest with the session's model and tokenizer."""

    def go(settings, paths, **kwargs) -> IngestSummary:
        return ingest(
            settings,
            [Path(p) for p in paths],
            embed_model=embed_model,
            count_tokens=count_tokens,
            progress=False,
            **kwargs,
        )

    return go


def chunk_ids_of(view: StoreView, paper_id: str) -> set[str]:
    return {cid for cid, c in view.chunks.items() if c["metadata"]["paper_id"] == paper_id}


def test_small_corpus_ingest(settings_factory, small_corpus, run):
    settings = settings_factory(collection="small")
    s = run(settings, [small_corpus])
    assert (s.files, s.entries, s.new, s.updated, s.unchanged) == (1, 4, 4, 0, 0)
    view = read_store(settings)
    assert set(view.papers) == set(SMALL_IDS)
    assert SMALL_IDS[0] == "arxiv:2301.00001"
    assert view.chunk_count == s.chunks > 4  # the long abstract needs several chunks
    assert len(chunk_ids_of(view, SMALL_IDS[1])) > 1
    assert_store_consistent(view)
    first = view.papers["arxiv:2301.00001"]["metadata"]
    assert first["authors"] == "Ada Lovelace, Alan Turing" and first["year"] == 2023
    assert "venue" not in view.papers[SMALL_IDS[1]]["metadata"]


def test_paper_records_hold_a_placeholder_vector_not_a_chunks(settings_factory, small_corpus, run):
    """Paper records are read by id only: a new store gives them a one-number vector, so Chroma's
    index of that collection costs nothing; the chunks keep MiniLM's vectors."""
    from app.core.papers import get_paper
    from app.core.store import PAPER_PLACEHOLDER_VECTOR

    settings = settings_factory(collection="placeholder")
    run(settings, [small_corpus])
    chunks, papers = get_collections(make_client(settings), settings.collection)
    paper_vectors = [list(r["embeddings"]) for r in iter_records(papers, include=["embeddings"])]
    assert len(paper_vectors) == 4 and all(v == PAPER_PLACEHOLDER_VECTOR for v in paper_vectors)
    assert {len(r["embeddings"]) for r in iter_records(chunks, include=["embeddings"])} == {384}
    stored = get_paper(papers, SMALL_IDS[0])
    assert stored is not None and stored.abstract.startswith("We propose a sparse attention")


def test_a_store_written_with_paper_vectors_keeps_them(settings_factory, tmp_path, small_corpus, run):
    """A store whose paper records carry their first chunk's vector (written before the placeholder)
    gets the same for new papers: a collection's vectors all have one dimension."""
    settings = settings_factory(collection="oldpapers")
    chunks, papers = get_collections(
        make_client(settings), settings.collection, create_with=layout_metadata(settings)
    )
    papers.upsert(ids=["old-paper"], embeddings=[[0.0] * 383 + [1.0]], documents=["An old record."])
    run(settings, [small_corpus])
    paper_vectors = {r["id"]: list(r["embeddings"]) for r in iter_records(papers, include=["embeddings"])}
    assert len(paper_vectors) == 5 and {len(v) for v in paper_vectors.values()} == {384}
    by_paper = {
        r["metadatas"]["paper_id"]: list(r["embeddings"])
        for r in iter_records(chunks, include=["embeddings", "metadatas"])
        if r["metadatas"]["chunk_index"] == 0
    }
    for paper_id in SMALL_IDS:
        assert paper_vectors[paper_id] == pytest.approx(by_paper[paper_id])


def test_changed_abstract_replaces_that_papers_chunks(settings_factory, tmp_path, small_corpus, run):
    settings = settings_factory(collection="changes")
    run(settings, [small_corpus])
    before = read_store(settings)

    # 1. A short abstract grows (one chunk -> several).
    grown = [dict(p) for p in SMALL_CORPUS]
    grown[0]["abstract"] += " Revised: we add a kangaroo-themed ablation. " + LONG_TAIL
    write_jsonl(small_corpus, grown)
    s = run(settings, [small_corpus])
    assert (s.new, s.updated, s.unchanged) == (0, 1, 3)
    mid = read_store(settings)
    old_ids, new_ids = chunk_ids_of(before, SMALL_IDS[0]), chunk_ids_of(mid, SMALL_IDS[0])
    assert old_ids and new_ids and not old_ids & new_ids
    assert len(new_ids) > len(old_ids)
    assert any("kangaroo-themed" in mid.chunks[c]["document"] for c in new_ids)
    assert mid.papers[SMALL_IDS[0]]["document"] == grown[0]["abstract"]
    assert s.chunks == len(new_ids)
    # The other papers are untouched.
    for pid in SMALL_IDS[1:]:
        assert chunk_ids_of(mid, pid) == chunk_ids_of(before, pid)
    assert mid.chunk_count == before.chunk_count - len(old_ids) + len(new_ids)
    assert_store_consistent(mid)
    chunks_col, _ = get_collections(make_client(settings), settings.collection)
    assert chunks_col.get(ids=sorted(old_ids))["ids"] == []

    # 2. A long abstract shrinks (several chunks -> one): every old chunk is swept.
    shrunk = [dict(p) for p in grown]
    shrunk[1]["abstract"] = "Byte-level models avoid tokenizers; a short wombat-flavoured version."
    write_jsonl(small_corpus, shrunk)
    s = run(settings, [small_corpus])
    assert (s.new, s.updated, s.unchanged, s.chunks) == (0, 1, 3, 1)
    after = read_store(settings)
    (only,) = chunk_ids_of(after, SMALL_IDS[1])
    assert "wombat-flavoured" in after.chunks[only]["document"]
    assert_store_consistent(after)
    assert after.paper_count == 4

    # 3. Unchanged again: nothing written.
    s = run(settings, [small_corpus])
    assert (s.new, s.updated, s.unchanged, s.chunks) == (0, 0, 4, 0)


def test_reset_rebuilds(settings_factory, small_corpus, run):
    settings = settings_factory(collection="resets")
    first = run(settings, [small_corpus])
    before = read_store(settings)
    s = run(settings, [small_corpus], reset=True)
    assert (s.new, s.updated, s.unchanged) == (4, 0, 0)
    assert s.chunks == first.chunks
    after = read_store(settings)
    assert after.chunks.keys() == before.chunks.keys()  # ids are deterministic
    assert after.paper_count == 4
    # reset drops what the input no longer has.
    write_jsonl(small_corpus, SMALL_CORPUS[:2])
    s = run(settings, [small_corpus], reset=True)
    assert s.new == 2
    after = read_store(settings)
    assert set(after.papers) == set(SMALL_IDS[:2])
    assert_store_consistent(after)


def test_good_and_bad_lines(settings_factory, tmp_path, run):
    settings = settings_factory(collection="mixed")
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            SMALL_CORPUS[0],
            '{"title": "Broken JSON", "abstract": ',
            {"title": "No abstract here"},
            SMALL_CORPUS[2],
            ["not", "an", "object"],
            "",
            SMALL_CORPUS[3],
        ],
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    s = run(settings, [path, empty])
    assert (s.files, s.entries, s.new) == (2, 3, 3)
    assert [i.split(":")[:2] for i in s.issues[:3]] == [
        ["mixed.jsonl", "2"],
        ["mixed.jsonl", "3"],
        ["mixed.jsonl", "5"],
    ]
    assert "malformed JSON" in s.issues[0] and "missing or empty abstract" in s.issues[1]
    assert len(s.issues) == 4 and str(empty) in s.issues[3] and "empty" in s.issues[3]
    rendered = s.render()
    assert "4 problem(s)" in rendered and "mixed.jsonl:2:" in rendered
    view = read_store(settings)
    assert set(view.papers) == {SMALL_IDS[0], SMALL_IDS[2], SMALL_IDS[3]}
    assert_store_consistent(view)


def test_mismatched_chunk_size_refused_until_reset(settings_factory, small_corpus, run):
    settings = settings_factory(collection="layout")
    run(settings, [small_corpus])
    before = read_store(settings)
    other = settings.model_copy(update={"chunk_size": 128})
    with pytest.raises(LayoutMismatch, match="--reset") as excinfo:  # the one layout check (app.core.store)
        run(other, [small_corpus])
    assert f"chunk_size {settings.chunk_size}" in str(excinfo.value) and "give 128" in str(excinfo.value)
    assert read_store(settings).chunks.keys() == before.chunks.keys()  # nothing written

    s = run(other, [small_corpus], reset=True)
    assert s.new == 4
    view = read_store(other)
    assert view.layout["paperqa_chunk_size"] == 128
    assert_store_consistent(view)


def test_no_corpus_files_is_an_error(settings_factory, tmp_path, run):
    (tmp_path / "notes.md").write_text("not a corpus")
    with pytest.raises(IngestError, match="No corpus files"):
        run(settings_factory(), [tmp_path])


def test_overlong_title_is_reported_not_fatal(settings_factory, tmp_path, run):
    settings = settings_factory(collection="long_title")
    swapped = {  # a record with title and abstract swapped, say
        "title": LONG_TAIL,
        "abstract": "Short text that ended up in the abstract field of this record by mistake.",
    }
    path = write_jsonl(tmp_path / "swapped.jsonl", [SMALL_CORPUS[0], swapped, SMALL_CORPUS[3]])
    s = run(settings, [path])
    assert s.new == 2
    assert any("swapped.jsonl:2" in issue for issue in s.issues)


# --------------------------------------------------------------------------------------------
# Chroma server mode
# --------------------------------------------------------------------------------------------


def test_make_client_uses_http_for_a_server(settings_factory, chroma_server):
    host, port = chroma_server
    settings = settings_factory(chroma_host=host, chroma_port=port)
    client = make_client(settings)
    chroma_settings = client.get_settings()
    assert chroma_settings.chroma_api_impl == "chromadb.api.fastapi.FastAPI"
    assert (chroma_settings.chroma_server_host, int(chroma_settings.chroma_server_http_port)) == (host, port)
    assert client.heartbeat() > 0
    assert not settings.chroma_path.exists()  # nothing written to the embedded store's folder


def test_ingest_into_chroma_server(settings_factory, small_corpus, chroma_server, run):
    host, port = chroma_server
    settings = settings_factory(chroma_host=host, chroma_port=port, collection="served")
    s = run(settings, [small_corpus])
    assert (s.new, s.updated, s.unchanged) == (4, 0, 0)
    view = read_store(settings)
    assert (view.paper_count, view.chunk_count) == (4, s.chunks)
    assert_store_consistent(view)
    names = {c.name for c in make_client(settings).list_collections()}
    assert {"served", "served" + PAPERS_SUFFIX} <= names

    again = run(settings, [small_corpus])
    assert (again.new, again.updated, again.unchanged, again.chunks) == (0, 0, 4, 0)
    assert read_store(settings).chunks.keys() == view.chunks.keys()
    assert not settings.chroma_path.exists()


def test_unreachable_server_is_store_unavailable(settings_factory, unused_local_port):
    settings = settings_factory(chroma_host="127.0.0.1", chroma_port=unused_local_port)
    with pytest.raises(StoreUnavailable, match="PAPERQA_CHROMA_HOST"):
        make_client(settings)


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


@pytest.fixture
def run_cli(tmp_path: Path, clean_env, project_dir):
    """``run_cli(args, collection)``: ``python -m ingest ARGS`` with a store in ``tmp_path``."""

    def go(args: list[str], collection: str) -> subprocess.CompletedProcess:
        env = clean_env(
            PAPERQA_CHROMA_PATH=str(tmp_path / "cli_chroma"),
            PAPERQA_COLLECTION=collection,
            PYTHONPATH=str(project_dir),
        )
        return subprocess.run(
            [sys.executable, "-m", "ingest", *args],
            cwd=tmp_path,  # no developer .env picked up from the project folder
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return go


def test_cli_ingests_and_reports(tmp_path, small_corpus, build_settings, run_cli):
    done = run_cli(["--quiet", str(small_corpus)], "cli_papers")
    assert done.returncode == 0, done.stderr
    assert "distinct papers 4 (new 4, updated 0, unchanged 0)" in done.stdout
    view = read_store(build_settings(chroma_path=tmp_path / "cli_chroma", collection="cli_papers"))
    assert view.paper_count == 4 and view.chunk_count > 4

    again = run_cli(["--quiet", str(small_corpus)], "cli_papers")
    assert again.returncode == 0, again.stderr
    assert "(new 0, updated 0, unchanged 4)" in again.stdout and "chunks written 0" in again.stdout

    skipped = run_cli(["--if-missing", str(small_corpus)], "cli_papers")
    assert skipped.returncode == 0 and "already built" in skipped.stdout


def test_cli_missing_path_exits_2(tmp_path, run_cli):
    missing = tmp_path / "does-not-exist.jsonl"
    done = run_cli([str(missing)], "cli_missing")
    assert done.returncode == 2
    assert done.stderr.startswith("error:")
    assert str(missing) in done.stderr
    assert done.stdout == ""


def test_cli_only_bad_records_exits_1(tmp_path, run_cli):
    path = write_jsonl(tmp_path / "bad.jsonl", ['{"title": ', {"title": "no abstract"}])
    done = run_cli(["--quiet", str(path)], "cli_bad")
    assert done.returncode == 1, done.stderr
    assert "2 problem(s)" in done.stdout and "bad.jsonl:1:" in done.stdout
