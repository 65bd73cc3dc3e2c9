"""Start the real service (``python -m app``) as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.settings import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """``with ServiceProcess(env) as service: service.url``; ``ready_s`` is start to /health ready."""

    def __init__(self, env: dict[str, str], timeout_s: float = 180.0, log: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PAPERQA_HOST": "127.0.0.1", "PAPERQA_PORT": str(self.port),
                    "PAPERQA_RATE_LIMIT_PER_MINUTE": "0"}
        self.timeout_s = timeout_s
        self.log = log or (PROJECT_ROOT / "var" / "bench" / f"service-{self.port}.log")
        self.ready_s: float | None = None
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "ServiceProcess":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen([sys.executable, "-m", "app"], env=self.env, cwd=PROJECT_ROOT,
                                            stdout=handle, stderr=subprocess.STDOUT)
        deadline = started + self.timeout_s
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited: see {self.log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).json().get("ready"):
                    self.ready_s = time.perf_counter() - started
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"service not ready after {self.timeout_s} s: see {self.log}")

    def rss_mib(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
