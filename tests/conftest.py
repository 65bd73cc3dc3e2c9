"""Shared fixtures for the whole test suite.

Conventions (please keep them when adding fixtures here):

- Tests never read the developer's ``.env`` nor ``PAPERQA_*`` variables of the shell that runs
  pytest: build settings with :func:`settings_factory`, which passes ``_env_file=None`` and hides
  those variables while the object is built. Every store lives under ``tmp_path``.
- Anything that loads the real embedding model or starts a real server is session-scoped (it is
  paid for once per run) and the tests using it are marked ``@pytest.mark.slow``
  (``pytest -m "not slow"`` runs the fast unit tests only).
- Nothing listens on anything but ``127.0.0.1``; nothing is downloaded (``app.offline``).

Fixtures:

``corpus_dir``         the bundled corpus, ``data/corpus`` (read-only: do not write there).
``settings_factory``   ``settings_factory(**overrides) -> Settings`` with a private Chroma path.
``build_settings``     session-scoped ``build_settings(**values) -> Settings`` for module/session
                       fixtures that cannot use ``tmp_path`` (give ``chroma_path`` yourself).
``embed_model``        the bundled all-MiniLM-L6-v2 as a LlamaIndex embedding (session, ~7 s).
``count_tokens``       the embedder's wordpiece counter used for chunking (session).
``chroma_server``      a real ``chroma run`` server on a free local port: ``(host, port)`` (session).
``chroma_process``     a ``chroma run`` server of this test only (:class:`tests.chroma_process.ChromaProcess`,
                       started): ``kill()`` it and ``start()`` it again on the same port and data.
``clean_env``          ``clean_env(**extra) -> dict``: ``os.environ`` minus project config, for
                       subprocesses (``python -m ingest`` ...).
``unused_local_port``  a TCP port nothing listens on (127.0.0.1).
``project_dir``        the project root (to put on ``PYTHONPATH`` of subprocesses).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app import offline

offline.configure()  # before anything imports chromadb / transformers

from app.settings import Settings  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent
PROJECT_DIR = TESTS_DIR.parent
CORPUS_DIR = TESTS_DIR / ".." / "data" / "corpus"

# Variables that would leak the developer's configuration into a test.
_CONFIG_ENV_PREFIXES = ("PAPERQA_",)
_CONFIG_ENV_NAMES = ("OPENAI_API_KEY", "OPENAI_BASE_URL")

CHROMA_START_TIMEOUT_S = 60.0


def _is_config_var(name: str) -> bool:
    return name.startswith(_CONFIG_ENV_PREFIXES) or name in _CONFIG_ENV_NAMES


def hermetic_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without project configuration variables, plus ``extra``; for subprocesses."""
    env = {k: v for k, v in os.environ.items() if not _is_config_var(k)}
    env.update(extra)
    return env


def _hermetic_settings(**values: object) -> Settings:
    """``Settings`` from ``values`` and defaults only: no ``.env`` file, no ``PAPERQA_*`` variable."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if _is_config_var(name):
                mp.delenv(name)
        return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def clean_env() -> Callable[..., dict[str, str]]:
    """``clean_env(**extra)``: the environment for a subprocess, without ``PAPERQA_*``/``OPENAI_*``."""
    return hermetic_env


@pytest.fixture
def unused_local_port() -> int:
    return free_local_port()


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The bundled corpus (five listing dumps); tests must not write into it."""
    path = CORPUS_DIR.resolve()
    assert path.is_dir(), f"bundled corpus missing: {path}"
    return path


@pytest.fixture(scope="session")
def build_settings() -> Callable[..., Settings]:
    """``build_settings(**values)``: hermetic ``Settings`` (no ``.env``, no ``PAPERQA_*``).

    For fixtures wider than one test; pass ``chroma_path`` under a ``tmp_path_factory`` folder.
    """
    return _hermetic_settings


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Build ``Settings`` for one test: ``settings_factory(collection="x", chunk_size=128)``.

    Defaults: ``chroma_path=tmp_path/"chroma"``, ``collection="test_papers"``. Any field can be
    overridden by keyword. The developer's ``.env`` and ``PAPERQA_*`` variables are never read.
    """

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "chroma_path": tmp_path / "chroma",
            "collection": "test_papers",
        }
        values.update(overrides)
        return _hermetic_settings(**values)

    return build


@pytest.fixture(scope="session")
def embed_model():
    """The real bundled embedding model (slow to load: once per session). Mark users ``slow``."""
    from app.embeddings import load_embed_model

    return load_embed_model(_hermetic_settings())


@pytest.fixture(scope="session")
def count_tokens() -> Callable[[str], list[int]]:
    """The embedder's wordpiece tokenizer without special tokens, as ingestion uses it."""
    from app.embeddings import load_wordpiece_counter

    return load_wordpiece_counter(_hermetic_settings())


def free_local_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real Chroma server (``chroma run``) on 127.0.0.1 and a free port, data in a temp folder.

    Yields ``(host, port)``; the server is stopped at the end of the session. Its output goes to
    ``chroma.log`` in its temp folder and is shown if it fails to start.
    """
    chroma_cli = Path(sys.executable).parent / "chroma"
    if not chroma_cli.exists():
        pytest.fail(f"chroma CLI not found next to the interpreter: {chroma_cli}")
    host, port = "127.0.0.1", free_local_port()
    workdir = tmp_path_factory.mktemp("chroma_server")
    log_path = workdir / "chroma.log"
    env = hermetic_env(ANONYMIZED_TELEMETRY="False")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(chroma_cli), "run", "--host", host, "--port", str(port), "--path", str(workdir / "data")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env=env,
        )
    try:
        _wait_for_chroma(process, host, port, log_path)
        yield host, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def chroma_process(tmp_path: Path) -> Iterator["ChromaProcess"]:
    """A Chroma server on 127.0.0.1 for one test, which may kill and restart it (same port, data)."""
    from tests.chroma_process import ChromaProcess

    data = tmp_path / "chroma_server_data"
    data.mkdir()
    server = ChromaProcess(
        data, free_local_port(), tmp_path / "chroma.log", hermetic_env(ANONYMIZED_TELEMETRY="False")
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _wait_for_chroma(process: subprocess.Popen, host: str, port: int, log_path: Path) -> None:
    url = f"http://{host}:{port}/api/v2/heartbeat"
    deadline = time.monotonic() + CHROMA_START_TIMEOUT_S
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"chroma server exited with {process.returncode} before it was up:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
            last_error = "non-200 heartbeat"
        except httpx.HTTPError as exc:
            last_error = repr(exc)
        time.sleep(0.25)
    pytest.fail(
        f"chroma server not up after {CHROMA_START_TIMEOUT_S:.0f} s ({last_error}):\n"
        + log_path.read_text(errors="replace")[-4000:]
    )


# --- the bundled corpus, indexed once per session ----------------------------------------------
BUNDLED_COLLECTION = "bundled_papers"


@dataclass
class BundledIndex:
    """The bundled corpus ingested once (``summary`` is that first run's) and a retriever over it."""

    settings: Settings
    summary: object
    retriever: object


@pytest.fixture(scope="session")
def bundled_index(tmp_path_factory: pytest.TempPathFactory, embed_model, count_tokens) -> BundledIndex:
    """The whole bundled corpus in a private embedded Chroma store (about a minute, once).

    Every test that needs the real index uses this one: ingestion tests read ``summary`` (the
    first, full run), answering and HTTP tests build on ``settings`` and ``retriever``. Do not
    write into its collection; make your own for tests that change a store.
    """
    from app.retrieval import Retriever
    from app.store import get_collections, make_client
    from ingest.pipeline import ingest

    settings = _hermetic_settings(
        chroma_path=tmp_path_factory.mktemp("bundled") / "chroma", collection=BUNDLED_COLLECTION
    )
    summary = ingest(settings, progress=False, embed_model=embed_model, count_tokens=count_tokens)
    chunks, _ = get_collections(make_client(settings), settings.collection)
    return BundledIndex(settings, summary, Retriever(settings, embed_model, chunks))


@pytest.fixture
def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (for "the server is down" tests)."""
    return free_local_port()


LLAMA_SERVER_START_TIMEOUT_S = 120.0


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server``) with the bundled
    SmolLM2 GGUF on 127.0.0.1 and a free port; yields its base URL (``http://127.0.0.1:P/v1``)."""
    from app.llm import bundled_gguf_path

    host, port = "127.0.0.1", free_local_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "llama_server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf_path()),
        "--host", host, "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
        "--model_alias", "smollm2",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=hermetic_env()
        )
    base = f"http://{host}:{port}/v1"
    try:
        deadline = time.monotonic() + LLAMA_SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama.cpp server exited early:\n{log_path.read_text(errors='replace')[-4000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server not up after {LLAMA_SERVER_START_TIMEOUT_S:.0f} s")
            time.sleep(0.25)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
