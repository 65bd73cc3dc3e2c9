"""Ingestion with the embedding on Ray: ``python -m ingest --ray [ADDRESS] [--workers N]``.

The driver (this process) does everything :func:`ingest.pipeline.ingest` does except the embedding,
with the same functions: it reads and dedupes the corpus, skips unchanged papers (content hashes
against the store), chunks each batch of papers, and writes the batches to the store; the chunk
texts of each batch go to one of N Ray actors, each holding one embedding model loaded once.

- Pipelining: at most ``in_flight_per_worker`` batches per actor are submitted and not yet written
  (bounded memory); the driver waits on them with ``ray.wait`` and writes each batch as soon as its
  vectors are back, whatever the order: batches are independent (each paper is in one batch only).
- Consistency and idempotency are ingest()'s, because the write is ingest()'s
  (:class:`ingest.pipeline.BatchWriter`: one thread, one batch at a time, in order, while the
  driver chunks the next batches): a batch's chunks, then its paper records, then the sweep of
  their stale chunks. A run killed at any point leaves whole papers only; the next run redoes the
  papers whose record (with its content hash) was not written.
- A worker that dies (killed, out of memory) is restarted by Ray (``max_restarts``) and the batches
  it had are run again (``max_task_retries``); should Ray give up, the driver sends the batch to
  another worker (at most :data:`MAX_RESUBMITS` times). Embedding is a pure function of the texts, so
  running it twice changes nothing, and only the driver writes: each batch is written once.
- Offline and local: Ray's usage statistics are off, there is no dashboard, and a local Ray (no
  ADDRESS) listens on 127.0.0.1 only (Ray's single-machine mode), with a token made for the run.

Ray is an optional extra (``pip install -e .[ray]``), imported only here and only when used.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from app.core import offline
from app.core.errors import IngestError, PaperQAError
from app.core.settings import Settings
from ingest.parsers import Format
from ingest.pipeline import (
    PAPERS_PER_BATCH,
    BatchWriter,
    IngestSummary,
    _batched,
    _begin_run,
    _chunk_batch,
    _ChunkedBatch,
    _ChunkTools,
    _count_written,
    _to_write,
    finish_lexical_index,
)

INSTALL_HINT = "install the ray extra: pip install -e .[ray]"
DEFAULT_LOCAL_WORKERS = 2
IN_FLIGHT_PER_WORKER = 2
BATCH_TIMEOUT_S = 600.0  # no batch back in this long: the cluster is stuck or short of CPUs
STARTUP_TIMEOUT_S = 600.0  # the workers' model load (the one-time ONNX export included)
ACTOR_MAX_RESTARTS = 3
ACTOR_MAX_TASK_RETRIES = 3
MAX_RESUBMITS = 3
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024  # a batch's texts and vectors are well under 1 MB


def configure_ray_environment(local: bool) -> None:
    """Before ``import ray``: no usage statistics; for a local Ray, loopback only and a token of
    its own (Ray would otherwise write one under ~/.ray). Variables already set are kept."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local:
        # Ray's single-machine mode (its default on macOS and Windows): the node's address is
        # 127.0.0.1, and every Ray server binds to it. Read by ray when it is imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        if not any(name in os.environ for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def import_ray(local: bool) -> Any:
    """``ray``, with the environment set for it; a clear error when the extra is not installed."""
    configure_ray_environment(local)
    try:
        import ray
    except ImportError as exc:
        raise IngestError(f"Ray ingestion needs Ray: {INSTALL_HINT}") from exc
    return ray


class EmbedWorker:
    """A Ray actor (made remote in :class:`_Workers`): one embedding model, loaded once."""

    def __init__(self, settings: Settings) -> None:
        offline.configure()  # before the model's libraries are imported, in this worker process
        from app.core.embeddings import load_embed_model

        self._model = load_embed_model(settings)
        self._pid = os.getpid()

    def ready(self) -> int:
        return self._pid

    def embed(self, texts: list[str]) -> tuple[int, float, list[list[float]]]:
        """``(pid, seconds, vectors)``: the vectors of ``texts``, in order."""
        started = time.perf_counter()
        vectors = self._model.get_text_embedding_batch(texts)
        return self._pid, time.perf_counter() - started, vectors


@dataclass
class BatchWritten:
    """What :func:`ingest_on_ray` tells ``on_batch`` after each batch is written."""

    number: int  # 1, 2, ... in the order of writing
    batch: int  # 1, 2, ... in the order of reading (of the batches with papers to write)
    worker: int  # index of the actor that embedded it
    pid: int  # its process
    paper_ids: list[str]
    chunks: int
    embed_s: float
    write_s: float
    worker_pending: list[int]  # batches (``batch`` numbers) submitted to that worker, not yet written


@dataclass
class RayIngestSummary(IngestSummary):
    workers: int = 0
    nodes: int = 0
    batches: int = 0
    resubmitted: int = 0
    pids: dict[int, list[int]] = field(default_factory=dict)  # worker -> its processes, in order
    read_s: float = 0.0  # driver: parse, dedupe, skip unchanged
    chunk_s: float = 0.0  # driver: chunking
    write_s: float = 0.0  # driver: store writes
    wait_s: float = 0.0  # driver: waiting for vectors
    embed_s: float = 0.0  # workers: embedding, summed over workers
    startup_s: float = 0.0  # starting Ray and the workers (model loads)

    @property
    def restarts(self) -> int:
        return sum(len(pids) - 1 for pids in self.pids.values())

    def render(self) -> str:
        if not self.workers:
            return super().render() + "\nRay: not started (nothing to embed)"
        line = (
            f"Ray: {self.workers} embedding worker(s) on {self.nodes} node(s), {self.batches} batches; "
            f"start-up {self.startup_s:.1f} s; driver read {self.read_s:.1f} s, chunk {self.chunk_s:.1f} s, "
            f"write {self.write_s:.1f} s, wait {self.wait_s:.1f} s; embedding {self.embed_s:.1f} s "
            f"(sum over workers)"
        )
        if self.restarts or self.resubmitted:
            line += f"; {self.restarts} worker restart(s), {self.resubmitted} batch(es) resubmitted"
        return super().render() + "\n" + line


@dataclass
class _Job:
    batch: _ChunkedBatch
    texts: list[str]
    number: int = 0
    worker: int = -1
    attempts: int = 0


class _Workers:
    """The Ray connection and the embedding actors; started on the first batch to embed, so a
    re-run over an unchanged corpus starts nothing."""

    def __init__(self, ray: Any, settings: Settings, address: str | None, workers: int | None) -> None:
        self.ray, self.settings, self.address, self.requested = ray, settings, address, workers
        self.actors: list[Any] = []
        self.load: list[int] = []
        self.started_ray = False

    def start(self, summary: RayIngestSummary) -> None:
        ray = self.ray
        started = time.perf_counter()
        if not ray.is_initialized():
            if self.address is None:
                ray.init(
                    address="local",  # a Ray of our own, even if `ray start` or RAY_ADDRESS says otherwise
                    num_cpus=self.requested or DEFAULT_LOCAL_WORKERS,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                    logging_level=logging.WARNING,
                )
            else:
                ray.init(address=self.address, logging_level=logging.WARNING)
            self.started_ray = True
        if self.address is None:
            node_ip = ray.util.get_node_ip_address()
            if node_ip not in ("127.0.0.1", "::1"):
                raise IngestError(
                    f"the local Ray listens on {node_ip}, not on the loopback interface only "
                    "(ray was imported before ingest.distributed configured it)"
                )
        # Nodes with a CPU to give (a head started with --num-cpus 0 only drives).
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]
        count = self.requested or (len(nodes) if self.address is not None else DEFAULT_LOCAL_WORKERS)
        if count < 1:
            raise IngestError("the Ray cluster has no node with a free CPU for an embedding worker")
        actor_class = ray.remote(EmbedWorker).options(
            num_cpus=1,
            max_restarts=ACTOR_MAX_RESTARTS,
            max_task_retries=ACTOR_MAX_TASK_RETRIES,
            scheduling_strategy="SPREAD",
        )
        # The first worker alone, then the others: on a machine without the cached ONNX export, one
        # worker makes it and the others find it.
        self.actors = [actor_class.remote(self.settings)]
        pids = self._ready(self.actors)
        self.actors += [actor_class.remote(self.settings) for _ in range(count - 1)]
        pids += self._ready(self.actors[1:])
        self.load = [0] * len(self.actors)
        summary.workers, summary.nodes = len(self.actors), len(nodes)
        summary.pids = {index: [pid] for index, pid in enumerate(pids)}
        summary.startup_s = time.perf_counter() - started

    def _ready(self, actors: list[Any]) -> list[int]:
        exceptions = self.ray.exceptions
        try:
            return list(self.ray.get([actor.ready.remote() for actor in actors], timeout=STARTUP_TIMEOUT_S))
        except exceptions.GetTimeoutError as exc:
            raise IngestError(
                f"the embedding workers were not ready in {STARTUP_TIMEOUT_S:.0f} s "
                "(does the Ray cluster have a free CPU for each?)"
            ) from exc
        except exceptions.RayError as exc:
            raise IngestError(f"an embedding worker failed to start: {exc}") from exc

    def submit(self, job: _Job, pending: dict[Any, _Job], avoid: int | None = None) -> None:
        candidates = [i for i in range(len(self.actors)) if i != avoid] or list(range(len(self.actors)))
        job.worker = min(candidates, key=lambda i: self.load[i])
        self.load[job.worker] += 1
        pending[self.actors[job.worker].embed.remote(job.texts)] = job

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self.actors = []
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False


def ingest_on_ray(
    settings: Settings,
    paths: list[Path] | None = None,
    fmt: Format | None = None,
    reset: bool = False,
    *,
    address: str | None = None,
    workers: int | None = None,
    count_tokens: Callable[[str], list[int]] | None = None,
    progress: bool = True,
    client: Any = None,
    papers_per_batch: int = PAPERS_PER_BATCH,
    in_flight_per_worker: int = IN_FLIGHT_PER_WORKER,
    batch_timeout_s: float = BATCH_TIMEOUT_S,
    on_batch: Callable[[BatchWritten], None] | None = None,
) -> RayIngestSummary:
    """Ingest ``paths`` (default: the configured corpus) like :func:`ingest.pipeline.ingest`, with
    the embedding on ``workers`` Ray actors.

    ``address``: None starts a local Ray of ``workers`` CPUs (default 2) on 127.0.0.1, stopped at
    the end; otherwise ``ray.init(address=...)`` joins that cluster (``workers`` default: one per
    node that has a CPU; ONNX Runtime uses all of a node's cores). A Ray already initialised in this process is used as it is and left running.
    """
    started = time.perf_counter()
    ray = import_ray(local=address is None)
    summary = RayIngestSummary()
    store, tools, papers = _begin_run(settings, paths, fmt, reset, count_tokens, client, summary)
    stored_hash = store.stored_hash
    batches = _batched(papers, papers_per_batch)

    pool = _Workers(ray, settings, address, workers)
    pending: dict[Any, _Job] = {}
    exhausted = False
    submitted = 0
    bar = tqdm(desc="papers", unit="paper", disable=not progress)

    def written(
        job: _Job, pid: int, embed_s: float, _batch: _ChunkedBatch, chunks: int, write_s: float
    ) -> None:
        _count_written(job.batch.papers, stored_hash, summary)
        summary.chunks += chunks
        summary.batches += 1
        summary.write_s += write_s
        summary.embed_s += embed_s
        seen = summary.pids.setdefault(job.worker, [])
        if pid not in seen:
            seen.append(pid)
        if on_batch is not None:
            on_batch(
                BatchWritten(
                    number=summary.batches,
                    batch=job.number,
                    worker=job.worker,
                    pid=pid,
                    paper_ids=[p.id for p in job.batch.papers],
                    chunks=chunks,
                    embed_s=embed_s,
                    write_s=write_s,
                    worker_pending=sorted(j.number for j in pending.values() if j.worker == job.worker),
                )
            )

    try:
        # The writer's thread stores a batch while the driver chunks the next ones and waits.
        with BatchWriter(store) as writer:
            while True:
                while not exhausted and (
                    not pool.actors or len(pending) < len(pool.actors) * in_flight_per_worker
                ):
                    job = _next_job(batches, tools, stored_hash, settings, summary, bar)
                    if job is None:
                        exhausted = True
                    elif job.batch.papers:
                        if not pool.actors:
                            pool.start(summary)
                        submitted += 1
                        job.number = submitted
                        pool.submit(job, pending)
                if not pending:
                    break
                waited = time.perf_counter()
                done, _ = ray.wait(list(pending), num_returns=1, timeout=batch_timeout_s)
                summary.wait_s += time.perf_counter() - waited
                if not done:
                    raise IngestError(
                        f"no embedding batch came back in {batch_timeout_s:.0f} s ({len(pending)} in flight)"
                    )
                job = pending.pop(done[0])
                pool.load[job.worker] -= 1
                result = _result(ray, done[0], job, pool, pending, summary)
                if result is None:
                    continue  # resubmitted
                pid, embed_s, vectors = result
                writer.submit(job.batch, vectors, partial(written, job, pid, embed_s))
    finally:
        bar.close()
        pool.close()
    summary.lexical = finish_lexical_index(settings, store.chunks, changed=writer.started)
    summary.seconds = time.perf_counter() - started
    return summary


def _next_job(batches, tools: _ChunkTools, stored_hash, settings: Settings, summary, bar) -> _Job | None:
    """The next batch of papers, chunked (no texts: nothing in it to write); None at the end."""
    began = time.perf_counter()
    batch = next(batches, None)
    if batch is None:
        summary.read_s += time.perf_counter() - began
        return None
    bar.update(len(batch))
    todo = _to_write(batch, stored_hash, tools.count_tokens, settings.chunk_size, summary)
    chunking = time.perf_counter()
    summary.read_s += chunking - began
    if not todo:
        return _Job(_ChunkedBatch([], {}), [])
    chunked = _chunk_batch(todo, tools.splitter)
    texts = chunked.texts()
    summary.chunk_s += time.perf_counter() - chunking
    return _Job(chunked, texts)


def _result(ray: Any, ref: Any, job: _Job, pool: _Workers, pending: dict[Any, _Job], summary) -> Any:
    """The worker's ``(pid, seconds, vectors)``, or None when the batch was sent again because its
    worker died and Ray gave up on it."""
    exceptions = ray.exceptions
    try:
        return ray.get(ref)
    except (exceptions.RayActorError, exceptions.WorkerCrashedError, exceptions.ObjectLostError) as exc:
        job.attempts += 1
        if job.attempts > MAX_RESUBMITS:
            raise IngestError(
                f"a batch of {len(job.batch.papers)} papers failed on {job.attempts} workers: {exc}"
            ) from exc
        summary.resubmitted += 1
        pool.submit(job, pending, avoid=job.worker)
        return None
    except exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, PaperQAError):
            raise cause from exc
        raise IngestError(f"embedding failed on a worker: {cause!r}") from exc
