"""``python -m ingest`` SIGKILLed mid-way, then run again: the store is consistent at every moment
(readers never see half a paper), and the re-run completes it without redoing finished work.

A corpus of 300 synthetic papers (real abstracts of the bundled corpus under new titles) goes into
a real Chroma server (with readers querying it all along, the kill included) and into the embedded
store. Consistency, as ingest/pipeline.py promises: every paper record in ``<collection>__papers``
has all its chunks, of its version; a chunk whose paper record is missing is allowed (the record is
written last) but no paper is visible through its record without all its chunks.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest

from app.core.papers import get_paper
from app.core.store import get_collections, iter_records, make_client
from tests.corpus_tools import ids_of, synthetic_papers, write_jsonl
from tests.helpers import hermetic_settings, server_ingest_env

pytestmark = pytest.mark.slow

N_PAPERS = 300
BATCH = 64  # ingest.pipeline.PAPERS_PER_BATCH
START_BOUND_S = 300.0  # model load and the first batch, on a busy 2-core machine
RUN_TIMEOUT_S = 900


@dataclass
class Snapshot:
    papers: dict[str, dict]  # id -> metadata
    chunks: dict[str, dict]


def snapshot(settings) -> Snapshot:
    """Paper records FIRST, then chunks: ingestion writes them the other way round, so any paper
    seen here must have its chunks in the later read."""
    if not settings.uses_chroma_server:
        from chromadb.api.client import SharedSystemClient

        SharedSystemClient.clear_system_cache()  # another process wrote: no cached view
    chunks_col, papers_col = get_collections(make_client(settings), settings.collection)
    papers = {r["id"]: r["metadatas"] for r in iter_records(papers_col, include=["metadatas"])}
    chunks = {r["id"]: r["metadatas"] for r in iter_records(chunks_col, include=["metadatas"])}
    return Snapshot(papers, chunks)


def inconsistencies(view: Snapshot) -> list[str]:
    problems = []
    by_paper: dict[str, dict[str, list[int]]] = {}
    for meta in view.chunks.values():
        by_paper.setdefault(meta["paper_id"], {}).setdefault(meta["content_hash"], []).append(
            meta["chunk_index"]
        )
    for paper_id, meta in view.papers.items():
        versions = by_paper.get(paper_id, {})
        indexes = sorted(versions.get(meta["content_hash"], []))
        if indexes != list(range(meta["n_chunks"])):
            problems.append(f"{paper_id}: chunks {indexes}, record says {meta['n_chunks']}")
        stale = set(versions) - {meta["content_hash"]}
        if stale:
            problems.append(f"{paper_id}: chunks of another version {sorted(stale)}")
    return problems


@dataclass
class Readers:
    """Reads the store in a loop while ingestion runs and dies: snapshots, queries, paper look-ups."""

    settings: object
    query_vector: list[float]
    stop: threading.Event = field(default_factory=threading.Event)
    reads: int = 0
    problems: list[str] = field(default_factory=list)
    queried: bool = False  # a vector query has found chunks once
    unflushed: int = 0  # queries refused before the collection's first HNSW flush

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                view = snapshot(self.settings)
                if view.papers or view.chunks:
                    self.problems += inconsistencies(view)
                chunks_col, papers_col = get_collections(make_client(self.settings), self.settings.collection)
                try:
                    hits = chunks_col.query(
                        query_embeddings=[self.query_vector], n_results=10, include=["metadatas"]
                    )
                except Exception as exc:
                    # A new collection on a Chroma server answers vector queries only once its HNSW
                    # segment has been flushed for the first time (chroma-core/chroma#4212): an error
                    # then is Chroma's start-up state, not a half-written paper. Once a query has
                    # found chunks, any failure counts.
                    if self.queried or "Nothing found on disk" not in str(exc):
                        raise
                    self.unflushed += 1
                    time.sleep(0.05)
                    continue
                self.queried = self.queried or bool(hits["ids"][0])
                for meta in hits["metadatas"][0]:
                    paper = get_paper(papers_col, meta["paper_id"])
                    if paper is not None and paper.n_chunks is not None:
                        full = chunks_col.get(where={"paper_id": meta["paper_id"]}, include=["metadatas"])
                        if len(full["ids"]) < paper.n_chunks:
                            self.problems.append(
                                f"{meta['paper_id']} visible with {len(full['ids'])}/{paper.n_chunks} chunks"
                            )
                self.reads += 1
            except Exception as exc:  # the collections do not exist before the first write
                if "No index named" not in str(exc):
                    self.problems.append(f"read failed: {type(exc).__name__}: {exc}")
            time.sleep(0.05)


def run_ingest(env: dict[str, str], corpus, cwd, kill_when=None) -> subprocess.CompletedProcess | None:
    command = [sys.executable, "-m", "ingest", "--quiet", str(corpus)]
    if kill_when is None:
        return subprocess.run(
            command, env=env, cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_BOUND_S
        while not kill_when():
            assert process.poll() is None, (
                f"ingest ended before the kill:\n{process.stdout.read().decode()[-3000:]}"
            )
            assert time.monotonic() < deadline, "the first batches were not written in time"
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    return None


def paper_count(settings) -> int:
    try:
        return len(snapshot(settings).papers)
    except Exception:
        return 0


@pytest.mark.parametrize("store", ["server", "embedded"])
def test_killed_ingest_leaves_a_consistent_store(
    store: str, request, tmp_path, clean_env, project_dir, embed_model
) -> None:
    collection = "crash_" + uuid.uuid4().hex[:8]
    if store == "server":
        host, port = request.getfixturevalue("chroma_server")
        settings = hermetic_settings(
            chroma_host=host, chroma_port=port, collection=collection, chroma_path=tmp_path / "unused"
        )
        env = server_ingest_env(host, port, collection, tmp_path / "unused", project_dir)
    else:
        settings = hermetic_settings(chroma_path=tmp_path / "chroma", collection=collection)
        env = clean_env(
            PAPERQA_CHROMA_PATH=str(tmp_path / "chroma"),
            PAPERQA_COLLECTION=collection,
            PYTHONPATH=str(project_dir),
        )
    records = synthetic_papers(N_PAPERS, tag="Crash")
    corpus = write_jsonl(tmp_path / "synthetic.jsonl", records)

    # 1. Killed once the first batch is in (and the next being written); readers all along (server).
    readers = Readers(settings, embed_model.get_query_embedding(records[0]["abstract"][:300]))
    thread = threading.Thread(target=readers.run, daemon=True)
    if store == "server":
        thread.start()
    try:
        run_ingest(env, corpus, tmp_path, kill_when=lambda: paper_count(settings) >= BATCH)
        time.sleep(1.0)  # readers keep reading after the kill
    finally:
        readers.stop.set()
        if thread.is_alive():
            thread.join(timeout=60)
    if store == "server":
        assert readers.reads >= 3 and readers.queried, "the readers did not get to read"
        assert readers.problems == [], readers.problems[:10]

    after_kill = snapshot(settings)
    assert inconsistencies(after_kill) == []
    assert BATCH <= len(after_kill.papers) < N_PAPERS, len(after_kill.papers)
    assert set(after_kill.papers) <= set(ids_of(records))

    # 2. Run again: everything is there, and what was complete is not redone.
    done = run_ingest(env, corpus, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"unchanged {len(after_kill.papers)})" in done.stdout, done.stdout
    complete = snapshot(settings)
    assert set(complete.papers) == set(ids_of(records))
    assert inconsistencies(complete) == []
    assert len(complete.chunks) == sum(meta["n_chunks"] for meta in complete.papers.values())

    # 3. Once more: nothing to write.
    again = run_ingest(env, corpus, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"(new 0, updated 0, unchanged {N_PAPERS})" in again.stdout and "chunks written 0" in again.stdout
    assert snapshot(settings).chunks.keys() == complete.chunks.keys()
