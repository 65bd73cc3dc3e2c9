"""Ingestion into a Chroma SERVER while the service answers from it: every search succeeds during
the run, and papers added after the service started become findable by BM25 too (the index is
refreshed in the background when the store's chunk count changes: PAPERQA_INDEX_REFRESH_S).

Also Chroma's security note (README): the app never sends an embedding-function configuration, so
a collection created through the server has none.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import httpx
import pytest

from app.core.store import PAPERS_SUFFIX, make_client
from app.http.app import create_app
from app.services import build_services
from tests.corpus_tools import ids_of, synthetic_papers, write_jsonl
from tests.helpers import LiveServer, hermetic_settings, server_ingest_env

pytestmark = pytest.mark.slow

NEEDLE = {
    "title": "Zorblax Tessellation Networks for Quokka Census Estimation",
    "abstract": "We count quokkas from aerial photographs with zorblax tessellation networks, a "
    "tiling of the image into zorblax cells whose counts are summed. Zorblax cells adapt their size "
    "to the local quokka density; the census error halves against per-pixel density maps.",
}
NEEDLE_QUERY = "zorblax tessellation quokka census"
FINDABLE_BOUND_S = 60.0


def test_search_keeps_working_during_ingest_and_finds_new_papers(
    chroma_server, tmp_path, embed_model, count_tokens, project_dir
) -> None:
    from ingest.pipeline import ingest

    host, port = chroma_server
    collection = "live_" + uuid.uuid4().hex[:8]
    settings = hermetic_settings(
        chroma_host=host,
        chroma_port=port,
        collection=collection,
        chroma_path=tmp_path / "unused",
        llm_backend="extractive",
        rate_limit_per_minute=0,
        index_refresh_s=1.0,
    )
    initial = synthetic_papers(40, tag="Initial")
    write_jsonl(tmp_path / "initial.jsonl", initial)
    ingest(
        settings,
        [tmp_path / "initial.jsonl"],
        embed_model=embed_model,
        count_tokens=count_tokens,
        progress=False,
    )
    added = synthetic_papers(150, tag="Added", start=40) + [NEEDLE]
    corpus = write_jsonl(tmp_path / "added.jsonl", added)

    services = build_services(settings, embed_model=embed_model)
    assert services.retriever.n_papers == 40
    env = server_ingest_env(host, port, collection, tmp_path / "unused", project_dir)
    with (
        LiveServer(create_app(services=services)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):

        def needle_found() -> bool:
            response = http.get("/search", params={"q": NEEDLE_QUERY, "mode": "bm25", "k": 3})
            assert response.status_code == 200, response.text
            return any(r["title"] == NEEDLE["title"] for r in response.json()["results"])

        assert not needle_found()
        statuses: list[int] = []
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest", "--quiet", str(corpus)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 600
            queries = [
                "quantization of vision transformers",
                "graph neural networks",
                "speech recognition",
                "Added Study",
                "music generation",
            ]
            while process.poll() is None:
                assert time.monotonic() < deadline, "ingest did not finish in 10 minutes"
                for mode in ("hybrid", "dense", "bm25"):
                    query = queries[len(statuses) % len(queries)]
                    statuses.append(http.get("/search", params={"q": query, "mode": mode}).status_code)
                time.sleep(0.1)
            output = process.stdout.read()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        assert process.returncode == 0, output[-3000:]
        assert len(statuses) >= 10 and set(statuses) == {200}, statuses

        # The new paper is found by BM25 within the refresh bound, without a restart.
        started = time.monotonic()
        while not needle_found():
            assert time.monotonic() - started < FINDABLE_BOUND_S, (
                "a paper ingested after start never became findable"
            )
            time.sleep(0.5)
        assert services.retriever.n_papers == 40 + len(added)
        top = http.get("/search", params={"q": NEEDLE_QUERY}).json()["results"][0]
        assert top["paper_id"] == ids_of([NEEDLE])[0]
        assert http.get(f"/papers/{top['paper_id']}").status_code == 200


def test_refresh_off_keeps_the_start_index(chroma_server, tmp_path, embed_model, count_tokens) -> None:
    """PAPERQA_INDEX_REFRESH_S=0: no background refresh; BM25 keeps what it loaded at start."""
    from ingest.pipeline import ingest

    host, port = chroma_server
    settings = hermetic_settings(
        chroma_host=host,
        chroma_port=port,
        collection="frozen_" + uuid.uuid4().hex[:8],
        chroma_path=tmp_path / "unused",
        llm_backend="extractive",
        index_refresh_s=0,
    )
    write_jsonl(tmp_path / "a.jsonl", synthetic_papers(5, tag="Frozen"))
    ingest(
        settings, [tmp_path / "a.jsonl"], embed_model=embed_model, count_tokens=count_tokens, progress=False
    )
    services = build_services(settings, embed_model=embed_model)
    with LiveServer(create_app(services=services)):
        write_jsonl(tmp_path / "b.jsonl", [NEEDLE])
        ingest(
            settings,
            [tmp_path / "b.jsonl"],
            embed_model=embed_model,
            count_tokens=count_tokens,
            progress=False,
        )
        time.sleep(2.0)
        assert services.retriever.n_papers == 5, "refresh is off: the start index stays"
        assert services.retriever.bm25_changed(), "but the new index is there to load"
    assert services.retriever.reload_bm25() == services.chunks.count()
    assert services.retriever.n_papers == 6


def test_collections_made_through_the_server_carry_no_embedding_function(
    chroma_server, tmp_path, embed_model, count_tokens
) -> None:
    from ingest.pipeline import ingest

    host, port = chroma_server
    settings = hermetic_settings(
        chroma_host=host,
        chroma_port=port,
        collection="noef_" + uuid.uuid4().hex[:8],
        chroma_path=tmp_path / "unused",
    )
    write_jsonl(tmp_path / "a.jsonl", synthetic_papers(3, tag="NoEF"))
    ingest(
        settings, [tmp_path / "a.jsonl"], embed_model=embed_model, count_tokens=count_tokens, progress=False
    )
    # What the server stored, read over its HTTP API (not through the client's own defaults).
    base = f"http://{host}:{port}/api/v2/tenants/default_tenant/databases/default_database/collections"
    for name in (settings.collection, settings.collection + PAPERS_SUFFIX):
        stored = httpx.get(f"{base}/{name}", timeout=10).json()
        assert stored["name"] == name
        assert stored["configuration_json"]["embedding_function"] is None, stored["configuration_json"]
        # Nowhere in the collection's schema either: no function the server could be made to build.
        found = list(embedding_functions(stored))
        assert found and all(ef is None or ef.get("type") != "known" for ef in found), found
    # and the client reads none back either
    collection = make_client(settings).get_collection(settings.collection, embedding_function=None)
    assert collection.configuration.get("embedding_function") is None


def embedding_functions(value):
    """Every ``embedding_function`` value anywhere in a JSON document."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "embedding_function":
                yield inner
            else:
                yield from embedding_functions(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from embedding_functions(inner)
