"""Helpers the tests share: hermetic settings and a real uvicorn server in a thread.

Process helpers (Chroma, llama.cpp, the service as a subprocess) are :mod:`bench.processes`, shared
with the benchmarks; SSE parsing is :mod:`tests.sse`; fakes of our own interfaces are :mod:`tests.fakes`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.core.settings import Settings
from bench.processes import is_config_var


def hermetic_settings(**values: object) -> Settings:
    """``Settings`` from ``values`` and the defaults only: no ``.env``, no ``PAPERQA_*``/``OPENAI_*``."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if is_config_var(name):
                mp.delenv(name)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class LiveServer:
    """A real uvicorn server for an app on 127.0.0.1 and a free port, run in a thread."""

    def __init__(self, app: Any, startup_timeout_s: float = 60.0) -> None:
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
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            daemon=True,
            name=f"uvicorn-{self.port}",
        )
        self._startup_timeout_s = startup_timeout_s

    def start(self) -> LiveServer:
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

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_ingest_env(
    host: str, port: int, collection: str, chroma_path: Path, project_dir: Path
) -> dict[str, str]:
    """The environment of a ``python -m ingest`` subprocess writing to the Chroma server at
    ``host:port``: hermetic (no ``PAPERQA_*``/``OPENAI_*`` of the caller's), with the service's own
    ``PAPERQA_CHROMA_PATH``, beside which the run writes the BM25 index the service reads."""
    from bench.processes import hermetic_env

    return hermetic_env(
        PAPERQA_CHROMA_HOST=host,
        PAPERQA_CHROMA_PORT=str(port),
        PAPERQA_CHROMA_PATH=str(chroma_path),
        PAPERQA_COLLECTION=collection,
        PYTHONPATH=str(project_dir),
    )


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


@asynccontextmanager
async def app_client(
    app: Any, client_addr: tuple[str, int] = ("127.0.0.1", 123), timeout_s: float = 60.0
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to ``app`` in process, with its lifespan run (start-up, shutdown)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=client_addr)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=timeout_s
        ) as client:
            yield client
