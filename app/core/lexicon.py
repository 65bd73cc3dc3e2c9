"""The BM25 index, built by ingestion and persisted beside the store; service instances load it
memory-mapped instead of building it from every chunk at start.

Layout, under ``Settings.lexical_dir`` (one folder per collection)::

    <collection>/CURRENT            {"version": "v-...", "state": "<token>", ...}   (replaced atomically)
    <collection>/v-<time>-<rand>/   bm25s's arrays, rows.*.npy (both memory-mapped), names.json, meta.json

The ``rows.*.npy`` arrays (:class:`Rows`) map each row of the index to its chunk id and each paper
to its rows, as offsets into UTF-8 blobs and integer arrays, memory-mapped: at a million papers
they would be hundreds of MiB as Python strings and lists in every service instance. (An index
written before them has ``rows.json``, still read.) The chunk texts stay in Chroma (a search
fetches the few it returns). ``names.json`` is the :class:`NameIndex` of every title.

Which store state an index matches: the chunk collection's metadata carries
``paperqa_lexical_state`` (a token written by the ingestion run that last finished) and, while a run
writes, ``paperqa_lexical_writing``. An index whose ``state`` equals the store's matches it; one
that does not (another store, a run that finished without it, none at all) is never used and
``/health`` says why. During a run (or after a run killed before it finished) the index is the one
of the last complete state; ``/health`` reports it as updating.

Tokenisation is LlamaIndex's ``BM25Retriever``'s (bm25s, English stopwords, the English Snowball
stemmer, ``(?u)\\b\\w\\w+\\b``), on the text each chunk was embedded from (title, newline, chunk).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.names import NameIndex
from app.core.settings import Settings

INDEX_VERSION = 1
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
STATE_KEY = "paperqa_lexical_state"
WRITING_KEY = "paperqa_lexical_writing"
CURRENT = "CURRENT"


def stemmer() -> Any:
    import Stemmer  # PyStemmer, a dependency of llama-index-retrievers-bm25

    return Stemmer.Stemmer("english")


def tokenize_corpus(texts: list[str], stem: Any) -> Any:
    import bm25s

    return bm25s.tokenize(
        texts, stopwords="en", stemmer=stem, token_pattern=TOKEN_PATTERN, show_progress=False
    )


def tokenize_query(query: str, stem: Any) -> Any:
    import bm25s

    return bm25s.tokenize(query, stemmer=stem, token_pattern=TOKEN_PATTERN, show_progress=False)


def collection_dir(settings: Settings, collection: str) -> Path:
    return settings.lexical_dir / collection


# --- the store's side ----------------------------------------------------------------------------
def _writable(metadata: dict[str, Any] | None) -> dict[str, Any]:
    # Chroma refuses a modify that repeats the distance function (it lives in the configuration).
    return {k: v for k, v in (metadata or {}).items() if not k.startswith("hnsw:")}


def store_state(chunks: Any) -> tuple[str | None, str | None]:
    """``(state, writing)`` of a chunk collection as its metadata says now."""
    metadata = chunks.metadata or {}
    state, writing = metadata.get(STATE_KEY), metadata.get(WRITING_KEY)
    return (str(state) if state else None, str(writing) if writing else None)


def mark_writing(chunks: Any) -> str:
    """Before a run changes the store: readers keep the last complete index and see it updating."""
    run = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
    chunks.modify(metadata={**_writable(chunks.metadata), WRITING_KEY: run})
    return run


def mark_state(chunks: Any, state: str) -> None:
    """After the index of ``state`` is in place: the store now matches it; no run is writing."""
    metadata = {k: v for k, v in _writable(chunks.metadata).items() if k != WRITING_KEY}
    chunks.modify(metadata={**metadata, STATE_KEY: state})


# --- building ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    chunk_id: str
    paper_id: str
    title: str
    text: str  # as embedded: title, newline, chunk


ROW_ARRAYS = ("chunk_blob", "chunk_offsets", "paper_blob", "paper_offsets", "paper_indptr", "paper_rows")


def _utf8_table(strings: list[str]) -> tuple[Any, Any]:
    """``strings`` as one UTF-8 blob and the offsets of each (``len(strings) + 1`` of them)."""
    import numpy as np

    encoded = [x.encode("utf-8") for x in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


@dataclass(frozen=True)
class Rows:
    """Row -> chunk id, and paper id -> its rows (ascending), as arrays: chunk ids in a UTF-8 blob
    with offsets; the paper ids sorted (by their UTF-8 bytes) in another, each paper's rows at
    ``paper_rows[paper_indptr[i]:paper_indptr[i + 1]]``. A paper is found by binary search."""

    chunk_blob: Any
    chunk_offsets: Any
    paper_blob: Any
    paper_offsets: Any
    paper_indptr: Any
    paper_rows: Any

    @classmethod
    def from_lists(cls, chunk_ids: list[str], paper_ids: list[str]) -> Rows:
        import numpy as np

        papers = sorted(set(paper_ids), key=lambda x: x.encode("utf-8"))
        number = {paper_id: i for i, paper_id in enumerate(papers)}
        paper_of_row = np.fromiter((number[p] for p in paper_ids), dtype=np.int64, count=len(paper_ids))
        order = np.argsort(paper_of_row, kind="stable")  # rows grouped by paper, ascending within
        indptr = np.zeros(len(papers) + 1, dtype=np.int64)
        np.cumsum(np.bincount(paper_of_row, minlength=len(papers)), out=indptr[1:])
        chunk_blob, chunk_offsets = _utf8_table(chunk_ids)
        paper_blob, paper_offsets = _utf8_table(papers)
        return cls(chunk_blob, chunk_offsets, paper_blob, paper_offsets, indptr, order.astype(np.int64))

    def save(self, directory: Path) -> None:
        import numpy as np

        for name in ROW_ARRAYS:
            np.save(directory / f"rows.{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, directory: Path) -> Rows:
        import numpy as np

        if not (directory / "rows.chunk_blob.npy").exists():  # an index written before the arrays
            legacy = json.loads((directory / "rows.json").read_text())
            return cls.from_lists(list(legacy["chunk_ids"]), list(legacy["paper_ids"]))
        return cls(*(np.load(directory / f"rows.{name}.npy", mmap_mode="r") for name in ROW_ARRAYS))

    def __len__(self) -> int:
        return len(self.chunk_offsets) - 1

    @property
    def n_papers(self) -> int:
        return len(self.paper_offsets) - 1

    def chunk_id(self, row: int) -> str:
        return bytes(self.chunk_blob[self.chunk_offsets[row] : self.chunk_offsets[row + 1]]).decode("utf-8")

    def _paper(self, i: int) -> bytes:
        return bytes(self.paper_blob[self.paper_offsets[i] : self.paper_offsets[i + 1]])

    def rows_of(self, paper_id: str) -> Any:
        """The rows of a paper, ascending (a NumPy array), or None for a paper the index lacks."""
        key = paper_id.encode("utf-8")
        lo, hi = 0, self.n_papers
        while lo < hi:
            mid = (lo + hi) // 2
            if self._paper(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        if lo == self.n_papers or self._paper(lo) != key:
            return None
        return self.paper_rows[self.paper_indptr[lo] : self.paper_indptr[lo + 1]]


def build(rows: Iterable[Row], directory: Path) -> dict[str, Any]:
    """Index ``rows`` and write the index into ``directory`` (created). Returns its meta."""
    import bm25s

    started = time.perf_counter()
    chunk_ids: list[str] = []
    paper_ids: list[str] = []
    titles: dict[str, str] = {}
    texts: dict[str, list[str]] = {}
    corpus: list[str] = []
    for row in rows:
        chunk_ids.append(row.chunk_id)
        paper_ids.append(row.paper_id)
        titles.setdefault(row.paper_id, row.title)
        texts.setdefault(row.paper_id, []).append(row.text)
        corpus.append(row.text)
    directory.mkdir(parents=True, exist_ok=False)
    if corpus:
        index = bm25s.BM25()
        index.index(tokenize_corpus(corpus, stemmer()), show_progress=False)
        index.save(str(directory), show_progress=False)
    names = NameIndex.build(titles, {pid: " ".join(parts) for pid, parts in texts.items()})
    Rows.from_lists(chunk_ids, paper_ids).save(directory)
    (directory / "names.json").write_text(
        json.dumps({"papers_by_key": names.papers_by_key, "spelling": names.spelling})
    )
    meta = {
        "index_version": INDEX_VERSION,
        "chunks": len(chunk_ids),
        "papers": len(titles),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    (directory / "meta.json").write_text(json.dumps(meta))
    return meta


def rows_from_store(chunks: Any) -> Iterator[Row]:
    from app.core.chunks import embed_text, stored_chunk_node
    from app.core.store import iter_records

    for record in iter_records(chunks, include=["documents", "metadatas"]):
        node = stored_chunk_node(record["id"], record["documents"] or "", record["metadatas"])
        yield Row(
            chunk_id=node.node_id,
            paper_id=str(node.metadata.get("paper_id", node.node_id)),
            title=str(node.metadata.get("title", "")),
            text=embed_text(node),
        )


def rebuild(settings: Settings, chunks: Any, collection: str) -> dict[str, Any]:
    """Build the index of every chunk the store holds, swap it in atomically, record its state in
    the store. Old versions are removed (a reader that has one memory-mapped keeps its files)."""
    root = collection_dir(settings, collection)
    root.mkdir(parents=True, exist_ok=True)
    version = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
    state = secrets.token_hex(8)
    meta = build(rows_from_store(chunks), root / version)
    pointer = {"version": version, "state": state, **meta}
    tmp = root / f".{CURRENT}.{secrets.token_hex(4)}"
    tmp.write_text(json.dumps(pointer))
    os.replace(tmp, root / CURRENT)
    mark_state(chunks, state)
    for old in root.glob("v-*"):
        if old.name != version:
            shutil.rmtree(old, ignore_errors=True)
    return pointer


def remove(settings: Settings, collection: str) -> None:
    shutil.rmtree(collection_dir(settings, collection), ignore_errors=True)


# --- loading -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Loaded:
    """A persisted index, loaded (arrays memory-mapped)."""

    version: str
    state: str
    bm25: Any  # bm25s.BM25, or None for an empty store
    rows: Rows
    names: NameIndex


def current(settings: Settings, collection: str) -> dict[str, Any] | None:
    """The ``CURRENT`` pointer of a collection's index, or None when there is none (cheap)."""
    try:
        pointer = json.loads((collection_dir(settings, collection) / CURRENT).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return pointer if isinstance(pointer, dict) and pointer.get("version") else None


def has_legacy_rows(settings: Settings, pointer: dict[str, Any] | None) -> bool:
    """The index ``pointer`` names keeps its rows in ``rows.json`` (written before :class:`Rows`)."""
    if pointer is None:
        return False
    return not (
        collection_dir(settings, settings.collection) / str(pointer["version"]) / "rows.chunk_blob.npy"
    ).exists()


def load(settings: Settings, collection: str, pointer: dict[str, Any]) -> Loaded:
    import bm25s

    directory = collection_dir(settings, collection) / str(pointer["version"])
    rows = Rows.load(directory)
    names = json.loads((directory / "names.json").read_text())
    bm25 = bm25s.BM25.load(str(directory), mmap=True, show_progress=False) if len(rows) else None
    return Loaded(
        version=str(pointer["version"]),
        state=str(pointer["state"]),
        bm25=bm25,
        rows=rows,
        names=NameIndex(
            papers_by_key={k: tuple(v) for k, v in names["papers_by_key"].items()},
            spelling=dict(names["spelling"]),
        ),
    )


@dataclass(frozen=True)
class Status:
    """How the persisted index stands against the store (``/health``'s ``lexical_index``)."""

    status: str  # ok | updating | stale | missing
    detail: str
    version: str | None = None

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "updating")


def status_of(pointer: dict[str, Any] | None, state: str | None, writing: str | None) -> Status:
    """Pure: does the index ``pointer`` match the store's ``state``? See the module docstring."""
    if pointer is None:
        return Status("missing", "no BM25 index was built for this store: run `python -m ingest`")
    version = str(pointer.get("version"))
    if pointer.get("state") != state:
        return Status(
            "stale",
            f"the BM25 index ({version}) was built for another state of the store; run `python -m ingest`",
            version,
        )
    if writing:
        return Status(
            "updating",
            f"an ingestion run ({writing}) is changing the store, or was stopped before it finished; "
            "searches use the index of the last complete state",
            version,
        )
    return Status("ok", f"{pointer.get('chunks')} chunks, built {pointer.get('built_at')}", version)
