"""Fixtures for the HTTP service tests: a real index of the bundled corpus, services, live servers.

Used as a plugin (``pytest_plugins = ["tests.service_fixtures"]``) by test_api.py,
test_api_local.py and test_browser.py, so the session-scoped fixtures are built once per run:

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
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from app import offline

offline.configure()

from app.main import create_app  # noqa: E402
from app.services import Services, build_services  # noqa: E402
from app.settings import Settings  # noqa: E402

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


def _is_config_var(name: str) -> bool:
    return name.startswith("PAPERQA_") or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL")


def hermetic_settings(**values: object) -> Settings:
    """``Settings`` from ``values`` and the defaults only: no ``.env``, no ``PAPERQA_*`` variable."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if _is_config_var(name):
                mp.delenv(name)
        return Settings(_env_file=None, **values)


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
    services = build_services(service_settings(service_store, llm_backend="local"), embed_model=embed_model)
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
class LiveServer:
    """A real uvicorn server for an app on 127.0.0.1 and a free port, run in a thread."""

    def __init__(self, app, startup_timeout_s: float = 60.0) -> None:
        self.app = app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3, ws="none"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True, name=f"uvicorn-{self.port}"
        )
        self._startup_timeout_s = startup_timeout_s

    def start(self) -> "LiveServer":
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the test server stopped during startup (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test server did not start within {self._startup_timeout_s} s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until_healthy(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).json().get("ready"):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not healthy after {timeout_s} s")
        time.sleep(0.1)


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


# --- reading SSE ----------------------------------------------------------------------------------
def parse_sse(text: str) -> list[tuple[str, str]]:
    """``[(event, data), ...]`` from a whole SSE body (comments skipped; event defaults to message)."""
    events: list[tuple[str, str]] = []
    for block in text.replace("\r\n", "\n").replace("\r", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            events.append((name, "\n".join(data)))
    return events


def iter_sse_lines(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Events as they arrive, from a streaming response's ``iter_lines()``."""
    name, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield name, "\n".join(data)
