"""Fixtures for the HTTP service tests: a real index of the bundled corpus, services, live servers.

Registered for the whole suite by conftest.py (``pytest_plugins``); the session-scoped fixtures
are built once per run, and only when a test asks for them:

``service_store``         the bundled corpus ingested into a private Chroma folder (session, ~1 min).
``extractive_services``   Services over it with ``llm_backend="extractive"`` (no LLM; deterministic).
``local_services``        Services over it with the bundled SmolLM2 model (``llm_backend="local"``).
``planted_services``      extractive Services over a tiny collection whose titles carry HTML.
``extractive_server``, ``local_server``, ``planted_server``
                          a real uvicorn server on 127.0.0.1:<free port> in a thread (session).

Settings never come from ``.env`` or ``PAPERQA_*`` variables (see conftest.py's conventions).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.settings import Settings
from app.http.app import create_app
from app.services import Services, build_services
from tests.helpers import LiveServer, hermetic_settings

SERVICE_COLLECTION = "bundled_papers"  # conftest.BUNDLED_COLLECTION
PLANTED_COLLECTION = "planted_papers"
HOSTILE_TITLE = "<img src=x onerror=alert(1)> Quantization of Vision Transformers after Training"

PLANTED_PAPERS = [
    {
        "id": "planted-1",
        "title": HOSTILE_TITLE,
        "abstract": (
            "We quantize vision transformers after training with a small calibration set. "
            "<script>window.__pwned = true</script> Post-training quantization keeps accuracy "
            "within one point at eight bits. <b>bold</b> & <i>friends</i>."
        ),
        "url": "javascript:alert(1)",
        "authors": "<svg onload=alert(2)> A. Author",
    },
    {
        "id": "planted-2",
        "title": "Post-Training Quantization for Vision Transformers with <b>Twin</b> Uniform Scales",
        "abstract": (
            "Post-training quantization of vision transformers suffers from skewed activations. "
            "Twin uniform quantization handles post-softmax and post-GELU values after training."
        ),
    },
    {
        "id": "planted-3",
        "title": "Graph Neural Networks for Molecule Property Prediction",
        "abstract": "Graph neural networks predict the properties of molecules from their structure.",
    },
]


# --- the index --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def service_store(bundled_index) -> Path:
    """The Chroma folder of the session's one index of the bundled corpus (conftest)."""
    return bundled_index.settings.chroma_path


def service_settings(store: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"chroma_path": store, "collection": SERVICE_COLLECTION}
    values.update(overrides)
    return hermetic_settings(**values)


@pytest.fixture(scope="session")
def extractive_services(service_store: Path, embed_model) -> Services:
    return build_services(service_settings(service_store, llm_backend="extractive"), embed_model=embed_model)


@pytest.fixture(scope="session")
def local_services(service_store: Path, embed_model) -> Iterator[Services]:
    # The model writes the whole answer (generate): these fixtures test the model's path over HTTP.
    settings = service_settings(service_store, llm_backend="local", answer_strategy="generate")
    services = build_services(settings, embed_model=embed_model)
    yield services
    asyncio.run(services.aclose())


@pytest.fixture(scope="session")
def planted_services(tmp_path_factory: pytest.TempPathFactory, embed_model, count_tokens) -> Services:
    """A tiny collection whose titles and abstracts carry HTML, answered extractively."""
    from ingest.pipeline import ingest

    folder = tmp_path_factory.mktemp("planted")
    corpus = folder / "planted.jsonl"
    corpus.write_text("\n".join(json.dumps(p) for p in PLANTED_PAPERS) + "\n", encoding="utf-8")
    settings = hermetic_settings(
        chroma_path=folder / "chroma",
        collection=PLANTED_COLLECTION,
        corpus_paths=[corpus],
        llm_backend="extractive",
    )
    summary = ingest(settings, progress=False, embed_model=embed_model, count_tokens=count_tokens)
    assert summary.papers == len(PLANTED_PAPERS), summary.render()
    return build_services(settings, embed_model=embed_model)


# --- live servers -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def extractive_server(extractive_services: Services) -> Iterator[LiveServer]:
    with LiveServer(create_app(services=extractive_services)) as server:
        yield server


@pytest.fixture(scope="session")
def local_server(local_services: Services) -> Iterator[LiveServer]:
    with LiveServer(create_app(services=local_services)) as server:
        yield server


@pytest.fixture(scope="session")
def planted_server(planted_services: Services) -> Iterator[LiveServer]:
    with LiveServer(create_app(services=planted_services)) as server:
        yield server
