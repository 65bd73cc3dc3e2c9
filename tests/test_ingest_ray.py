"""Ingestion with the embedding on Ray (``ingest/distributed.py``, ``python -m ingest --ray``).

Against a local Ray of 2 CPUs on 127.0.0.1 (started once for the module) and a real ``chroma run``
server: the Ray run writes the same store as the plain ``ingest()``; re-running adds nothing and a
changed abstract replaces its paper; a worker SIGKILLed mid-run is restarted by Ray and the run ends
with every paper written exactly once, its chunks complete, no orphan chunk.

Skipped when Ray is not installed (the ``ray`` extra: ``pip install -e .[ray]``).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from app.core.store import get_collections, iter_records, make_client
from tests.corpus_tools import ids_of, real_papers, synthetic_papers, write_jsonl
from tests.helpers import hermetic_settings, server_ingest_env
from tests.test_ingest_crash import inconsistencies, snapshot

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None,
        reason="ray is not installed: the ray extra (pip install -e .[ray])",
    ),
]

RAY_CPUS = 2
MIN_COSINE = 0.98  # the int8 embedder's vectors depend a little on which texts share a batch
RUN_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray with 2 CPUs, no dashboard, on 127.0.0.1 only; shut down after the module."""
    from ingest.distributed import LOCAL_OBJECT_STORE_BYTES, import_ray

    before = {name: value for name, value in os.environ.items() if name.startswith("RAY_")}
    ray = import_ray(local=True)
    assert not ray.is_initialized()
    ray.init(
        address="local",
        num_cpus=RAY_CPUS,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
        logging_level=logging.WARNING,
    )
    try:
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        yield ray
    finally:
        ray.shutdown()
        for name in [n for n in os.environ if n.startswith("RAY_")]:
            if before.get(name) is None:
                del os.environ[name]
        os.environ.update(before)


def server_settings(chroma_server: tuple[str, int], tmp_path: Path, prefix: str) -> Any:
    host, port = chroma_server
    return hermetic_settings(
        chroma_host=host,
        chroma_port=port,
        collection=f"{prefix}_{uuid.uuid4().hex[:8]}",
        chroma_path=tmp_path / f"unused-{prefix}",
    )


def contents(settings) -> dict[str, dict[str, tuple[str, dict, list[float]]]]:
    """Every record of both collections: id -> (document, metadata, embedding)."""
    chunks, papers = get_collections(make_client(settings), settings.collection)
    include = ["documents", "metadatas", "embeddings"]
    return {
        kind: {
            rec["id"]: (rec["documents"], rec["metadatas"], list(rec["embeddings"]))
            for rec in iter_records(collection, include=include)
        }
        for kind, collection in (("chunks", chunks), ("papers", papers))
    }


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def orphans(view) -> list[str]:
    """Chunks whose paper record is missing or is of another version (content hash)."""
    return [
        chunk_id
        for chunk_id, meta in view.chunks.items()
        if view.papers.get(meta["paper_id"], {}).get("content_hash") != meta["content_hash"]
    ]


def assert_complete(settings, paper_ids: list[str]) -> None:
    view = snapshot(settings)
    assert sorted(view.papers) == sorted(paper_ids)
    assert inconsistencies(view) == []
    assert orphans(view) == []
    assert len(view.chunks) == sum(meta["n_chunks"] for meta in view.papers.values())


def test_ray_ingest_writes_the_store_plain_ingest_writes(
    ray_cluster, chroma_server, tmp_path, embed_model, count_tokens
) -> None:
    from ingest.distributed import ingest_on_ray
    from ingest.pipeline import ingest

    records = [{"title": p.title, "abstract": p.abstract} for p in real_papers()[:60]]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    plain = server_settings(chroma_server, tmp_path, "plain")
    on_ray = server_settings(chroma_server, tmp_path, "onray")

    expected = ingest(plain, [corpus], embed_model=embed_model, count_tokens=count_tokens, progress=False)
    workers_used: set[int] = set()
    summary = ingest_on_ray(
        on_ray,
        [corpus],
        workers=2,
        count_tokens=count_tokens,
        progress=False,
        papers_per_batch=16,
        batch_timeout_s=RUN_TIMEOUT_S,
        on_batch=lambda event: workers_used.add(event.worker),
    )
    assert (summary.new, summary.updated, summary.unchanged) == (60, 0, 0)
    assert summary.chunks == expected.chunks and summary.batches == 4
    assert summary.workers == 2 and workers_used == {0, 1}, "both workers embedded batches"

    want, got = contents(plain), contents(on_ray)
    lowest = 1.0
    for kind in ("papers", "chunks"):
        assert got[kind].keys() == want[kind].keys(), kind
        for record_id, (document, metadata, vector) in want[kind].items():
            assert got[kind][record_id][0] == document
            assert got[kind][record_id][1] == metadata
            lowest = min(lowest, cosine(got[kind][record_id][2], vector))
    assert lowest >= MIN_COSINE, lowest
    print(f"lowest cosine between the Ray and the plain vectors: {lowest:.5f}")
    assert_complete(on_ray, ids_of(records))
    assert_bm25_matches(on_ray)


def assert_bm25_matches(settings) -> None:
    """The run left a persisted BM25 index that matches the store, as ingest() does."""
    from app.core import lexicon

    chunks, _ = get_collections(make_client(settings), settings.collection)
    status = lexicon.status_of(lexicon.current(settings, settings.collection), *lexicon.store_state(chunks))
    assert status.status == "ok", status


def test_ray_reingest_adds_nothing_and_a_changed_abstract_replaces_its_paper(
    ray_cluster, chroma_server, tmp_path, count_tokens
) -> None:
    from ingest.distributed import ingest_on_ray

    def run(records: list[dict]):
        corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
        return ingest_on_ray(
            settings,
            [corpus],
            workers=2,
            count_tokens=count_tokens,
            progress=False,
            papers_per_batch=8,
            batch_timeout_s=RUN_TIMEOUT_S,
        )

    settings = server_settings(chroma_server, tmp_path, "rerun")
    records = [{"title": p.title, "abstract": p.abstract} for p in real_papers()[100:124]]
    first = run(records)
    assert (first.new, first.updated, first.unchanged) == (24, 0, 0)
    before = contents(settings)

    again = run(records)
    assert (again.new, again.updated, again.unchanged, again.chunks) == (0, 0, 24, 0)
    assert again.workers == 0, "nothing to embed: Ray workers are not even started"
    after = contents(settings)
    for kind in ("papers", "chunks"):
        assert {k: v[:2] for k, v in after[kind].items()} == {k: v[:2] for k, v in before[kind].items()}

    changed = dict(
        records[5], abstract="We revisit this question with a new method. " + records[5]["abstract"]
    )
    records[5] = changed
    third = run(records)
    assert (third.new, third.updated, third.unchanged) == (0, 1, 23)
    changed_id = ids_of([changed])[0]
    view = snapshot(settings)
    old_hash = before["papers"][changed_id][1]["content_hash"]
    assert view.papers[changed_id]["content_hash"] != old_hash
    assert not [m for m in view.chunks.values() if m["content_hash"] == old_hash], "old version swept"
    assert_complete(settings, ids_of(records))
    assert_bm25_matches(settings)
    others = {k for k, v in before["chunks"].items() if v[1]["paper_id"] != changed_id}
    assert others <= set(view.chunks), "the unchanged papers' chunks are untouched"


def process_gone(pid: int, bound_s: float = 30.0) -> bool:
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return True
        if state == "Z":  # killed, not yet reaped by its raylet
            return True
        time.sleep(0.1)
    return False


def test_a_worker_killed_mid_run_is_restarted_and_every_paper_is_written_once(
    ray_cluster, chroma_server, tmp_path, count_tokens
) -> None:
    from ingest.distributed import ingest_on_ray

    settings = server_settings(chroma_server, tmp_path, "raykill")
    records = synthetic_papers(120, tag="RayKill")
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    killed: dict[str, Any] = {}
    events = []

    def on_batch(event) -> None:
        events.append(event)
        if not killed:  # the first batch is written: kill the worker that embedded it
            killed.update(pid=event.pid, worker=event.worker, pending=event.worker_pending)
            os.kill(event.pid, signal.SIGKILL)

    summary = ingest_on_ray(
        settings,
        [corpus],
        workers=2,
        count_tokens=count_tokens,
        progress=False,
        papers_per_batch=16,  # 8 batches, each about a second of embedding here
        in_flight_per_worker=4,  # all 8 submitted at once: the killed worker has 3 still to do
        batch_timeout_s=RUN_TIMEOUT_S,
        on_batch=on_batch,
    )
    # The kill happened while that worker had batches to do; Ray restarted it (a new process) and
    # batches that were waiting on the killed process were embedded again by the new one.
    assert killed and len(killed["pending"]) >= 2, killed
    assert process_gone(killed["pid"]), "the killed worker process is still running"
    pids = summary.pids[killed["worker"]]
    assert pids[0] == killed["pid"] and len(pids) >= 2 and summary.restarts >= 1, summary.pids
    embedded_by = {e.batch: e.pid for e in events}
    redone = [b for b in killed["pending"] if embedded_by[b] != killed["pid"]]
    assert redone, f"no batch in flight at the kill was embedded again: {killed}, {embedded_by}"

    # Every paper written exactly once, complete; nothing orphaned.
    written = [paper_id for event in events for paper_id in event.paper_ids]
    assert len(written) == len(set(written)) == 120
    assert set(written) == set(ids_of(records))
    assert (summary.new, summary.updated, summary.unchanged) == (120, 0, 0)
    assert summary.batches == len(events) == 8
    assert sorted(embedded_by) == list(range(1, 9))
    assert_complete(settings, ids_of(records))
    assert_bm25_matches(settings)
    print(
        f"killed pid {killed['pid']} (worker {killed['worker']}, batches {killed['pending']} pending); "
        f"worker pids {summary.pids}; redone by the restarted worker {redone}; "
        f"resubmitted by the driver {summary.resubmitted}"
    )

    again = ingest_on_ray(settings, [corpus], workers=2, count_tokens=count_tokens, progress=False)
    assert (again.new, again.updated, again.unchanged, again.chunks) == (0, 0, 120, 0)


def test_when_ray_does_not_retry_the_driver_sends_the_batch_again(
    ray_cluster, chroma_server, tmp_path, count_tokens, monkeypatch
) -> None:
    """With Ray's task retries off, the killed worker's batches fail; the driver resubmits them."""
    from ingest import distributed

    monkeypatch.setattr(distributed, "ACTOR_MAX_TASK_RETRIES", 0)
    settings = server_settings(chroma_server, tmp_path, "resubmit")
    records = synthetic_papers(48, tag="RayResubmit")
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    killed: dict[str, int] = {}
    written: list[str] = []

    def on_batch(event) -> None:
        written.extend(event.paper_ids)
        if not killed and event.worker_pending:
            killed.update(pid=event.pid, worker=event.worker)
            os.kill(event.pid, signal.SIGKILL)

    summary = distributed.ingest_on_ray(
        settings,
        [corpus],
        workers=2,
        count_tokens=count_tokens,
        progress=False,
        papers_per_batch=4,
        batch_timeout_s=RUN_TIMEOUT_S,
        on_batch=on_batch,
    )
    assert killed, "no worker had a batch in flight after a write"
    assert summary.resubmitted >= 1, summary.render()
    assert len(written) == len(set(written)) == 48
    assert (summary.new, summary.batches) == (48, 12)
    assert_complete(settings, ids_of(records))


def ray_servers() -> set[int]:
    """Processes of Ray's GCS servers on this machine."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"gcs_server" in (entry / "cmdline").read_bytes().split(b"\0")[0]:
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def test_the_command_starts_a_local_ray_and_stops_it(
    ray_cluster, chroma_server, tmp_path, project_dir
) -> None:
    """``python -m ingest --ray --workers 2`` with its own local Ray (not the module's)."""
    host, port = chroma_server
    collection = "raycli_" + uuid.uuid4().hex[:8]
    records = synthetic_papers(30, tag="RayCli")
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    env = server_ingest_env(host, port, collection, tmp_path / "unused", project_dir)
    env = {k: v for k, v in env.items() if not k.startswith("RAY_")}  # as a user's shell would be
    servers = ray_servers()
    token_file = Path.home() / ".ray" / "auth_token"
    had_token_file = token_file.exists()
    done = subprocess.run(
        [sys.executable, "-m", "ingest", "--quiet", "--ray", "--workers", "2", str(corpus)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(new 30, updated 0, unchanged 0)" in done.stdout, done.stdout
    assert "Ray: 2 embedding worker(s) on 1 node(s)" in done.stdout, done.stdout
    assert ray_servers() <= servers, "the command's Ray is still running"
    assert token_file.exists() == had_token_file, "the local Ray's token is the run's own, not saved"
    settings = hermetic_settings(
        chroma_host=host, chroma_port=port, collection=collection, chroma_path=tmp_path / "unused"
    )
    assert_complete(settings, ids_of(records))


def test_without_ray_the_error_says_how_to_install_it(monkeypatch, tmp_path) -> None:
    from app.core.errors import IngestError
    from ingest.distributed import INSTALL_HINT, import_ray

    monkeypatch.setattr(os, "environ", dict(os.environ))  # what import_ray sets goes away after
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(IngestError, match=r"pip install -e \.\[ray\]"):
        import_ray(local=True)
    assert "pip install -e .[ray]" in INSTALL_HINT
