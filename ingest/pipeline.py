"""Corpus files in, Chroma collections out: dedupe, skip unchanged, chunk, embed, write.

Consistency, for readers during a run and after a crash (SIGKILL included):
- a batch of papers is written with one ``upsert`` of its chunks, then one of its paper records;
  Chroma applies each call as one transaction, so a paper's chunks appear together or not at all;
- a changed paper's new chunks have new ids (the id carries the content hash); they are written
  before its old chunks are deleted, so a reader always finds one whole version of it;
- the paper record (with its content hash) is written after its chunks, so a run killed in between
  sees the paper as not yet ingested next time and redoes it; stale chunks are swept then too.

Batches are written by one background thread (:class:`BatchWriter`), one batch at a time and in
order, while the next batch is read, chunked and embedded: the store's work (a Chroma server's, or
Chroma's own threads in process) overlaps ours. Each write is the same sequence of calls as above.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tqdm import tqdm

from app.core import lexicon
from app.core.errors import IngestError, UnreadableFile
from app.core.records import Paper, ParseIssue
from app.core.settings import Settings
from app.core.store import (
    PAPER_PLACEHOLDER_VECTOR,
    apply_search_config,
    check_layout,
    delete_collections,
    get_collections,
    iter_records,
    layout_metadata,
    make_client,
    paper_vectors_are_placeholders,
)
from ingest.parsers import Format, ReadLimits, corpus_files, read_file

PAPERS_PER_BATCH = 64


@dataclass
class IngestSummary:
    files: int = 0
    entries: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    conflicts: list[str] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    lexical: str = ""

    @property
    def papers(self) -> int:
        return self.new + self.updated + self.unchanged

    def render(self) -> str:
        lines = [
            f"files {self.files}, entries read {self.entries}, distinct papers {self.papers} "
            f"(new {self.new}, updated {self.updated}, unchanged {self.unchanged}), "
            f"duplicate entries {self.duplicates}, chunks written {self.chunks}, "
            f"{self.seconds:.1f} s",
        ]
        if self.lexical:
            lines.append(self.lexical)
        if self.conflicts:
            lines.append(f"{len(self.conflicts)} title(s) seen with different abstracts (first kept):")
            lines.extend(f"  {c}" for c in self.conflicts[:20])
        if self.issues:
            lines.append(f"{len(self.issues)} problem(s), those records skipped:")
            lines.extend(f"  {i}" for i in self.issues[:50])
            if len(self.issues) > 50:
                lines.append(f"  ... and {len(self.issues) - 50} more")
        return "\n".join(lines)


def dedupe(records: Iterable[Paper | ParseIssue], summary: IngestSummary) -> Iterator[Paper]:
    """Yield each paper once. Same id and same content: a duplicate. Same id, other content: a
    conflict, reported; the first entry wins so that a run's result does not depend on batching."""
    seen: dict[str, tuple[str, str]] = {}
    for record in records:
        if isinstance(record, ParseIssue):
            summary.issues.append(str(record))
            continue
        summary.entries += 1
        previous = seen.get(record.id)
        if previous is None:
            seen[record.id] = (record.content_hash, f"{record.source}:{record.line}")
            yield record
            continue
        summary.duplicates += 1
        if previous[0] != record.content_hash:
            summary.conflicts.append(
                f"{record.title!r}: {previous[1]} kept, {record.source}:{record.line} differs"
            )


def _batched(items: Iterable[Paper], size: int) -> Iterator[list[Paper]]:
    batch: list[Paper] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _records_from(
    paths: list[Path], fmt: Format | None, limits: ReadLimits, summary: IngestSummary
) -> Iterator[Paper | ParseIssue]:
    """Every file's records; a file that cannot be read (or stops being readable) is reported and
    the next one read."""
    for path in paths:
        summary.files += 1
        try:
            yield from read_file(path, fmt, limits)
        except UnreadableFile as exc:
            summary.issues.append(str(exc))


def _input_files(paths: list[Path], summary: IngestSummary) -> list[Path]:
    """The corpus files of ``paths``; an input that cannot be reached (a symbolic link loop, a
    dangling link, a folder that cannot be listed) goes into the summary's issues and is skipped."""
    problems: list[str] = []
    files = corpus_files(paths, on_problem=problems.append)
    if not files:
        unreadable = f" Unreadable: {'; '.join(problems)}" if problems else ""
        raise IngestError(
            f"No corpus files found (*.txt, *.jsonl, *.json); check the paths given.{unreadable}"
        )
    summary.issues.extend(problems)
    return files


def ingest(
    settings: Settings,
    paths: list[Path] | None = None,
    fmt: Format | None = None,
    reset: bool = False,
    embed_model=None,
    count_tokens: Callable[[str], list[int]] | None = None,
    progress: bool = True,
    client=None,
) -> IngestSummary:
    """Ingest ``paths`` (default: the configured corpus) into the configured store."""
    started = time.perf_counter()
    summary = IngestSummary()
    store, tools, papers = _begin_run(settings, paths, fmt, reset, count_tokens, client, summary)
    stored_hash = store.stored_hash

    def embedder():
        # Loaded on first use: re-running on an unchanged corpus never pays for torch.
        nonlocal embed_model
        if embed_model is None:
            from app.core.embeddings import load_embed_model

            embed_model = load_embed_model(settings)
        return embed_model

    bar = tqdm(desc="papers", unit="paper", disable=not progress)

    def written(batch: _ChunkedBatch, chunks: int, _seconds: float) -> None:
        summary.chunks += chunks
        _count_written(batch.papers, stored_hash, summary)

    with BatchWriter(store) as writer:
        for batch in _batched(papers, PAPERS_PER_BATCH):
            bar.update(len(batch))
            todo = _to_write(batch, stored_hash, tools.count_tokens, settings.chunk_size, summary)
            if not todo:
                continue
            chunked = _chunk_batch(todo, tools.splitter)
            vectors = embedder().get_text_embedding_batch(chunked.texts())
            writer.submit(chunked, vectors, written)
    bar.close()
    summary.lexical = finish_lexical_index(settings, store.chunks, changed=writer.started)
    summary.seconds = time.perf_counter() - started
    return summary


def finish_lexical_index(settings: Settings, chunks_col: Any, changed: bool) -> str:
    """Rebuild the persisted BM25 index when the store changed or the index does not match it
    (missing, stale, or left updating by a killed run), or was written before its row tables were
    arrays (:class:`app.core.lexicon.Rows`); say what was done."""
    state, running = lexicon.store_state(chunks_col)
    pointer = lexicon.current(settings, settings.collection)
    status = lexicon.status_of(pointer, state, running)
    if not changed and status.status == "ok" and not lexicon.has_legacy_rows(settings, pointer):
        return f"BM25 index up to date ({status.version})"
    rebuilt = lexicon.rebuild(settings, chunks_col, settings.collection)
    return (
        f"BM25 index rebuilt: {rebuilt['chunks']} chunks in {rebuilt['build_seconds']} s "
        f"({settings.lexical_dir / settings.collection})"
    )


class _ChunkTools:
    """The tokenizer and splitter, built on first use: re-running on an unchanged corpus never
    loads the tokenizer nor imports llama-index (most of that command's time)."""

    def __init__(self, settings: Settings, count_tokens: Callable[[str], list[int]] | None) -> None:
        self._settings = settings
        if count_tokens is not None:
            self.count_tokens = count_tokens

    @cached_property
    def count_tokens(self) -> Callable[[str], list[int]]:
        from app.core.embeddings import load_wordpiece_counter

        return load_wordpiece_counter(self._settings)

    @cached_property
    def splitter(self):  # -> SentenceSplitter
        from ingest.chunking import make_splitter

        return make_splitter(self.count_tokens, self._settings.chunk_size, self._settings.chunk_overlap)


def _chunkable(paper: Paper, count_tokens, chunk_size: int, summary: IngestSummary) -> bool:
    from ingest.chunking import TitleTooLong, check_title

    try:
        check_title(paper, count_tokens, chunk_size)
    except TitleTooLong as exc:
        summary.issues.append(f"{paper.source}:{paper.line}: {exc}")
        return False
    return True


# --- shared with ingest.distributed (embedding on Ray): the same steps as ingest(), one function each


@dataclass
class _Store:
    """The collections a run writes and what it knows of them before reading the corpus."""

    chunks: Any
    papers: Any
    stored_hash: dict[str, str | None]  # paper id -> content hash of every stored paper
    paper_placeholders: bool  # paper records get PAPER_PLACEHOLDER_VECTOR (else first-chunk vectors)
    max_batch: int  # records per Chroma call


def _open_store(settings: Settings, client: Any, reset: bool) -> _Store:
    """The chunk and paper collections, created or checked (deleted first on ``reset``), and the
    content hash of every stored paper: what ingest() does before it reads the corpus."""
    if reset:
        delete_collections(client, settings.collection)
        lexicon.remove(settings, settings.collection)
    chunks_col, papers_col = get_collections(
        client, settings.collection, create_with=layout_metadata(settings)
    )
    check_layout(chunks_col, settings, writing=True)
    apply_search_config(chunks_col, settings)
    stored_hash = {
        rec["id"]: (rec["metadatas"] or {}).get("content_hash")
        for rec in iter_records(papers_col, include=["metadatas"])
    }
    return _Store(
        chunks_col,
        papers_col,
        stored_hash,
        paper_vectors_are_placeholders(papers_col),
        client.get_max_batch_size(),
    )


def _begin_run(
    settings: Settings,
    paths: list[Path] | None,
    fmt: Format | None,
    reset: bool,
    count_tokens: Callable[[str], list[int]] | None,
    client: Any,
    summary: IngestSummary,
) -> tuple[_Store, _ChunkTools, Iterator[Paper]]:
    """How every run starts: the corpus files listed, the store opened (or reset), the chunking
    tools (loaded on first use), and the papers to come, read and deduplicated lazily."""
    files = _input_files(paths or settings.corpus_paths, summary)
    store = _open_store(settings, client or make_client(settings), reset)
    papers = dedupe(_records_from(files, fmt, ReadLimits.from_settings(settings), summary), summary)
    return store, _ChunkTools(settings, count_tokens), papers


def _to_write(
    batch: list[Paper],
    stored_hash: dict[str, str | None],
    count_tokens: Callable[[str], list[int]],
    chunk_size: int,
    summary: IngestSummary,
) -> list[Paper]:
    """The papers of ``batch`` to write (new or changed, and chunkable); the others are counted
    (unchanged) or reported (title too long)."""
    todo = [p for p in batch if stored_hash.get(p.id) != p.content_hash]
    summary.unchanged += len(batch) - len(todo)
    return [p for p in todo if _chunkable(p, count_tokens, chunk_size, summary)]


def _count_written(todo: list[Paper], stored_hash: dict[str, str | None], summary: IngestSummary) -> None:
    for paper in todo:
        if paper.id in stored_hash:
            summary.updated += 1
        else:
            summary.new += 1


@dataclass
class _ChunkedBatch:
    """A batch of papers to write and their chunks (LlamaIndex ``TextNode``s), paper by paper."""

    papers: list[Paper]
    nodes_by_paper: dict[str, list[Any]]

    @property
    def nodes(self) -> list[Any]:
        return [node for paper_nodes in self.nodes_by_paper.values() for node in paper_nodes]

    def texts(self) -> list[str]:
        """What is embedded for each chunk, in :attr:`nodes` order."""
        from ingest.chunking import embed_text

        return [embed_text(node) for node in self.nodes]


def _chunk_batch(todo: list[Paper], splitter) -> _ChunkedBatch:
    from ingest.chunking import chunk_paper

    return _ChunkedBatch(todo, {paper.id: chunk_paper(paper, splitter) for paper in todo})


class BatchWriter:
    """Writes embedded batches with :func:`_store_batch` on one background thread, one at a time and
    in the order given, while the caller prepares the next one.

    The first :meth:`submit` marks the store as being written (:func:`app.core.lexicon.mark_writing`:
    readers keep the last complete BM25 index and report it updating); :attr:`started` says whether
    anything was submitted. :meth:`submit` first waits for the previous write (so at most one batch
    is written while one is prepared: bounded memory), then hands this one over. ``done(batch, chunks, seconds)`` runs on the
    caller's thread once a write has finished, at the next :meth:`submit` or at :meth:`wait`; a
    failed write raises there. Leaving the ``with`` block waits for the last write, also when the
    block raises, so no write is abandoned half-way by this process (a killed process is the
    module's crash case)."""

    def __init__(self, store: _Store) -> None:
        self._store = store
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self._pending: tuple[Future[tuple[int, float]], _ChunkedBatch, Callable[..., None]] | None = None
        self.started = False

    def submit(
        self, batch: _ChunkedBatch, vectors: Any, done: Callable[[_ChunkedBatch, int, float], None]
    ) -> None:
        self.wait()
        if not self.started:
            lexicon.mark_writing(self._store.chunks)
            self.started = True
        self._pending = (self._thread.submit(self._write, batch, vectors), batch, done)

    def wait(self) -> None:
        """Wait for the write in progress, if any, and report it to its ``done``."""
        if self._pending is None:
            return
        future, batch, done = self._pending
        self._pending = None
        chunks, seconds = future.result()
        done(batch, chunks, seconds)

    def _write(self, batch: _ChunkedBatch, vectors: Any) -> tuple[int, float]:
        started = time.perf_counter()
        chunks = _store_batch(batch, vectors, self._store)
        return chunks, time.perf_counter() - started

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self.wait()
            elif self._pending is not None:
                self._pending[0].exception()  # let it finish; the error in flight is the one raised
        finally:
            self._thread.shutdown(wait=True)


def _store_batch(batch: _ChunkedBatch, vectors: Any, store: _Store) -> int:
    """Write a batch whose chunks are embedded (``vectors`` in :attr:`_ChunkedBatch.nodes` order):
    its chunks, then its paper records, then the sweep of their stale chunks (module docstring)."""
    chunks_col, papers_col, max_batch = store.chunks, store.papers, store.max_batch
    todo, nodes_by_paper, nodes = batch.papers, batch.nodes_by_paper, batch.nodes
    vector_of = {node.id_: vector for node, vector in zip(nodes, vectors, strict=True)}

    for start in range(0, len(nodes), max_batch):
        part = nodes[start : start + max_batch]
        chunks_col.upsert(
            ids=[n.id_ for n in part],
            embeddings=[vector_of[n.id_] for n in part],
            documents=[n.text for n in part],
            metadatas=[dict(n.metadata) for n in part],
        )
    papers_col.upsert(
        ids=[p.id for p in todo],
        embeddings=[
            PAPER_PLACEHOLDER_VECTOR if store.paper_placeholders else vector_of[nodes_by_paper[p.id][0].id_]
            for p in todo
        ],
        documents=[p.abstract for p in todo],
        metadatas=[
            {
                **p.metadata,
                "title": p.title,
                "source": p.source,
                "content_hash": p.content_hash,
                "n_chunks": len(nodes_by_paper[p.id]),
            }
            for p in todo
        ],
    )
    # Sweep chunks of these papers that belong to no current version (changed papers, killed runs).
    keep = set(vector_of)
    stale = [
        rec["id"]
        for rec in iter_records(chunks_col, include=[], where={"paper_id": {"$in": [p.id for p in todo]}})
        if rec["id"] not in keep
    ]
    if stale:
        chunks_col.delete(ids=stale)
    return len(nodes)
