"""Shared fixtures for the whole test suite.

Two tiers:

- **fast** (``make test-fast``, ``pytest -m "not slow"``): pure functions, and the real store,
  retrieval, answering pipeline and HTTP app over a small temporary store built with the fakes of
  :mod:`tests.fakes` (a hashing embedder, a scripted chat backend). No model is loaded.
- **slow** (``@pytest.mark.slow``): the real bundled MiniLM, SmolLM2, ``chroma run`` and llama.cpp
  servers, Chromium. Anything expensive is session-scoped and built only when a test asks for it.

Conventions (please keep them when adding fixtures here):

- Tests never read the developer's ``.env`` nor ``PAPERQA_*``/``OPENAI_*`` variables of the shell:
  settings come from :func:`tests.helpers.hermetic_settings` (``settings_factory``, ``build_settings``).
  Every store lives under a temporary folder.
- Nothing listens on anything but ``127.0.0.1``; nothing is downloaded (``app.core.offline``); every
  wait is bounded. Processes are started with :mod:`bench.processes` (shared with the benchmarks).

Fixtures:

``corpus_dir``         the bundled corpus, ``data/corpus`` (read-only: do not write there).
``settings_factory``   ``settings_factory(**overrides) -> Settings`` with a private Chroma path.
``build_settings``     session-scoped ``build_settings(**values) -> Settings`` for module/session
                       fixtures that cannot use ``tmp_path`` (give ``chroma_path`` yourself).
``fake_settings``      settings of a small temporary store of :data:`tests.fakes.FAKE_PAPERS`.
``fake_services_factory``  ``factory(backend=None, **overrides) -> Services`` over that store, built
                       with the hashing embedder (fast tier).
``fake_store``         module-scoped settings of one such store, ingested once per module.
``contract_services``  extractive Services over ``fake_store`` (module-scoped; fast tier): what
                       the HTTP contract tests run against.
``embed_model``        the bundled all-MiniLM-L6-v2 as a LlamaIndex embedding (session, ~7 s; slow).
``count_tokens``       the embedder's wordpiece counter used for chunking (session).
``chroma_server``      a real ``chroma run`` server on a free local port: ``(host, port)`` (session).
``chroma_process``     a ``chroma run`` server of this test only (:class:`bench.processes.ManagedProcess`,
                       started): ``kill()``/``pause()`` it and ``start()``/``resume()`` it again.
``llama_server``       llama.cpp's OpenAI-compatible server with the bundled GGUF: its ``/v1`` URL.
``bundled_index``      the bundled corpus ingested once per session, and a retriever over it.
``clean_env``          ``clean_env(**extra) -> dict``: ``os.environ`` minus project config, for
                       subprocesses (``python -m ingest`` ...).
``free_port``, ``unused_local_port``  a TCP port nothing listens on (127.0.0.1).
``project_dir``        the project root (to put on ``PYTHONPATH`` of subprocesses).

Service fixtures over the real index (``extractive_services``, ``local_server`` ...) are in
:mod:`tests.service_fixtures`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.helpers", "tests.fakes", "tests.sse", "tests.service_fixtures")
pytest_plugins = ["tests.service_fixtures"]

TESTS_DIR = Path(__file__).resolve().parent
PROJECT_DIR = TESTS_DIR.parent
CORPUS_DIR = PROJECT_DIR / "data" / "corpus"
BUNDLED_COLLECTION = "bundled_papers"


def pytest_configure(config: pytest.Config) -> None:
    from app.core import offline

    offline.configure()  # before any test imports chromadb / transformers


@pytest.fixture(scope="session")
def clean_env() -> Callable[..., dict[str, str]]:
    """``clean_env(**extra)``: the environment for a subprocess, without ``PAPERQA_*``/``OPENAI_*``."""
    from bench.processes import hermetic_env

    return hermetic_env


@pytest.fixture
def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (for "the server is down" tests)."""
    from bench.processes import free_port as pick

    return pick()


@pytest.fixture
def unused_local_port(free_port: int) -> int:
    return free_port


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The bundled corpus (five listing dumps); tests must not write into it."""
    assert CORPUS_DIR.is_dir(), f"bundled corpus missing: {CORPUS_DIR}"
    return CORPUS_DIR


@pytest.fixture(scope="session")
def build_settings() -> Callable[..., Any]:
    """``build_settings(**values)``: hermetic ``Settings`` (no ``.env``, no ``PAPERQA_*``).

    For fixtures wider than one test; pass ``chroma_path`` under a ``tmp_path_factory`` folder.
    """
    from tests.helpers import hermetic_settings

    return hermetic_settings


@pytest.fixture
def settings_factory(tmp_path: Path, build_settings: Callable[..., Any]) -> Callable[..., Any]:
    """Build ``Settings`` for one test: ``settings_factory(collection="x", chunk_size=128)``.

    Defaults: ``chroma_path=tmp_path/"chroma"``, ``collection="test_papers"``. Any field can be
    overridden by keyword. The developer's ``.env`` and ``PAPERQA_*`` variables are never read.
    """

    def build(**overrides: object) -> Any:
        values: dict[str, object] = {"chroma_path": tmp_path / "chroma", "collection": "test_papers"}
        values.update(overrides)
        return build_settings(**values)

    return build


# --- fast tier: the real pipeline over a small store made with the fakes ------------------------
@pytest.fixture
def fake_settings(tmp_path: Path, build_settings: Callable[..., Any]) -> Any:
    from tests.fakes import fake_settings as make

    return make(build_settings, tmp_path / "fake")


@pytest.fixture
def fake_services_factory(fake_settings: Any) -> Iterator[Callable[..., Any]]:
    """``factory(backend=None, **settings_overrides) -> Services`` (closed after the test)."""
    from tests.fakes import fake_services

    built: list[Any] = []

    def make(backend: Any = None, **overrides: object) -> Any:
        settings = fake_settings.model_copy(update=overrides) if overrides else fake_settings
        services = fake_services(settings, backend)
        built.append(services)
        return services

    yield make
    for services in built:
        asyncio.run(services.aclose())


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory: pytest.TempPathFactory, build_settings: Callable[..., Any]) -> Any:
    """Settings of a small store of :data:`tests.fakes.FAKE_PAPERS`, ingested once per module."""
    from ingest.pipeline import ingest
    from tests.fakes import HashingEmbedding, count_words
    from tests.fakes import fake_settings as make

    settings = make(build_settings, tmp_path_factory.mktemp("fake_store"))
    ingest(settings, progress=False, embed_model=HashingEmbedding(), count_tokens=count_words)
    return settings


@pytest.fixture(scope="module")
def contract_services(fake_store: Any) -> Any:
    """Extractive services over :func:`fake_store` (no model): for HTTP contract tests."""
    from app.services import build_services
    from tests.fakes import HashingEmbedding

    return build_services(fake_store, embed_model=HashingEmbedding(), load_llm=False)


# --- slow tier: real models and servers ---------------------------------------------------------
@pytest.fixture(scope="session")
def embed_model(build_settings: Callable[..., Any]) -> Any:
    """The real bundled embedding model (slow to load: once per session). Mark users ``slow``."""
    from app.core.embeddings import load_embed_model

    return load_embed_model(build_settings())


@pytest.fixture(scope="session")
def count_tokens(build_settings: Callable[..., Any]) -> Callable[[str], list[int]]:
    """The embedder's wordpiece tokenizer without special tokens, as ingestion uses it."""
    from app.core.embeddings import load_wordpiece_counter

    return load_wordpiece_counter(build_settings())


def _started(process: Any) -> Any:
    from bench.processes import ProcessFailed

    try:
        return process.start()
    except ProcessFailed as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real Chroma server (``chroma run``) on 127.0.0.1 and a free port, data in a temp folder.

    Yields ``(host, port)``; stopped at the end of the session. Its log is shown if it fails to start.
    """
    from bench.processes import chroma_server as make

    workdir = tmp_path_factory.mktemp("chroma_server")
    server = _started(make(workdir / "data", workdir / "chroma.log"))
    try:
        yield server.host, server.port
    finally:
        server.stop()


@pytest.fixture
def chroma_process(tmp_path: Path) -> Iterator[Any]:
    """A Chroma server on 127.0.0.1 for one test, which may kill and restart it (same port, data)."""
    from bench.processes import chroma_server as make

    server = _started(make(tmp_path / "chroma_server_data", tmp_path / "chroma.log"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server``) with the bundled
    SmolLM2 GGUF on 127.0.0.1 and a free port; yields its base URL (``http://127.0.0.1:P/v1``)."""
    from app.answering.llm import bundled_gguf_path
    from bench.processes import llama_server as make

    server = _started(make(bundled_gguf_path(), tmp_path_factory.mktemp("llama_server") / "llama_server.log"))
    try:
        yield server.url + "/v1"
    finally:
        server.stop()


@dataclass
class BundledIndex:
    """The bundled corpus ingested once (``summary`` is that first run's) and a retriever over it."""

    settings: Any
    summary: Any
    retriever: Any


@pytest.fixture(scope="session")
def bundled_index(
    tmp_path_factory: pytest.TempPathFactory,
    build_settings: Callable[..., Any],
    embed_model: Any,
    count_tokens: Callable[[str], list[int]],
) -> BundledIndex:
    """The whole bundled corpus in a private embedded Chroma store (about a minute, once).

    Every test that needs the real index uses this one: ingestion tests read ``summary`` (the
    first, full run), answering and HTTP tests build on ``settings`` and ``retriever``. Do not
    write into its collection; make your own for tests that change a store.
    """
    from app.core.store import get_collections, make_client
    from app.retrieval.search import PaperRetriever
    from ingest.pipeline import ingest

    settings = build_settings(
        chroma_path=tmp_path_factory.mktemp("bundled") / "chroma", collection=BUNDLED_COLLECTION
    )
    summary = ingest(settings, progress=False, embed_model=embed_model, count_tokens=count_tokens)
    chunks, _ = get_collections(make_client(settings), settings.collection)
    return BundledIndex(settings, summary, PaperRetriever(settings, embed_model, chunks))
