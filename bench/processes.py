"""Start, wait for, pause and stop the real processes the tests and benchmarks need.

One helper for every server the project runs beside itself: a ``chroma run`` server, llama.cpp's
OpenAI-compatible server with the bundled GGUF, and the service (``python -m app``). Each listens
on 127.0.0.1 only; every wait is bounded and a failure shows the tail of the process's log.

    with chroma_server(data_dir, log) as chroma:  # started, heartbeat answered
        chroma.kill(); chroma.start()              # same port, same data
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from app.core.settings import PROJECT_ROOT

HOST = "127.0.0.1"
CONFIG_PREFIXES = ("PAPERQA_",)
CONFIG_NAMES = ("OPENAI_API_KEY", "OPENAI_BASE_URL")


class ProcessFailed(RuntimeError):
    """A managed process exited early or did not become ready in time (the message has its log)."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def is_config_var(name: str) -> bool:
    return name.startswith(CONFIG_PREFIXES) or name in CONFIG_NAMES


def hermetic_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without the project's configuration variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not is_config_var(k)}
    env.update(extra)
    return env


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process, from /proc (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def status_ok(response: httpx.Response) -> bool:
    return response.status_code == 200


def health_ready(response: httpx.Response) -> bool:
    try:
        return response.status_code == 200 and bool(response.json().get("ready"))
    except ValueError:
        return False


class ManagedProcess:
    """A subprocess that is ready when ``ready_url`` answers as ``is_ready`` wants."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        port: int,
        ready_path: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        is_ready: Callable[[httpx.Response], bool] = status_ok,
        timeout_s: float = 120.0,
        poll_s: float = 0.2,
    ) -> None:
        self.name, self.command, self.host, self.port = name, list(command), HOST, port
        self.url = f"http://{HOST}:{port}"
        self.ready_url = self.url + ready_path
        self.log_path, self.env, self.cwd = log_path, dict(env or hermetic_env()), cwd
        self.is_ready, self.timeout_s, self.poll_s = is_ready, timeout_s, poll_s
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ProcessFailed(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> ManagedProcess:
        """Start it and wait until it is ready (at most ``timeout_s``)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=self.env,
            )
        last = "no attempt yet"
        while time.monotonic() - started < self.timeout_s:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise ProcessFailed(f"{self.name} exited with {code} before it was ready:\n{self.log_tail()}")
            try:
                response = httpx.get(self.ready_url, timeout=2.0)
                if self.is_ready(response):
                    self.ready_s = time.monotonic() - started
                    return self
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(self.poll_s)
        self.stop()
        raise ProcessFailed(
            f"{self.name} not ready after {self.timeout_s:.0f} s ({last}):\n{self.log_tail()}"
        )

    def kill(self) -> None:
        """SIGKILL: no goodbye, like a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, but nothing answers (a hung server)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None:
            raise ProcessFailed(f"{self.name} is not running")
        self.process.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused process cannot stop
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def rss_mib(self) -> float | None:
        return rss_mib(self.pid)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def chroma_server(data_dir: Path, log_path: Path, port: int | None = None) -> ManagedProcess:
    """``chroma run`` on 127.0.0.1 with its data in ``data_dir`` (telemetry off)."""
    cli = Path(sys.executable).parent / "chroma"
    if not cli.exists():
        raise ProcessFailed(f"the chroma command is missing next to the interpreter: {cli}")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    return ManagedProcess(
        "chroma server",
        [str(cli), "run", "--host", HOST, "--port", str(port), "--path", str(data_dir)],
        port=port,
        ready_path="/api/v2/heartbeat",
        log_path=log_path,
        cwd=data_dir.parent,
        env=hermetic_env(ANONYMIZED_TELEMETRY="False"),
        timeout_s=60.0,
    )


def llama_server(
    gguf: Path,
    log_path: Path,
    port: int | None = None,
    *,
    n_ctx: int = 2048,
    threads: int = 2,
    alias: str = "smollm2",
) -> ManagedProcess:
    """llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server``); base URL ``url + "/v1"``."""
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--host",
        HOST,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),
        "--model_alias",
        alias,
    ]
    return ManagedProcess(
        "llama.cpp server", command, port=port, ready_path="/v1/models", log_path=log_path, timeout_s=120.0
    )


def service(
    env: Mapping[str, str],
    log_path: Path | None = None,
    port: int | None = None,
    *,
    timeout_s: float = 180.0,
    hermetic: bool = False,
) -> ManagedProcess:
    """The service, ``python -m app``, ready when ``/health`` says so. ``env`` adds to the
    environment (``hermetic``: to one without the caller's ``PAPERQA_*``); the rate limit is off
    unless ``env`` sets it."""
    port = port or free_port()
    log_path = log_path or PROJECT_ROOT / "var" / "bench" / f"service-{port}.log"
    base = hermetic_env() if hermetic else dict(os.environ)
    full = {
        **base,
        "PAPERQA_RATE_LIMIT_PER_MINUTE": "0",
        **env,
        "PAPERQA_HOST": HOST,
        "PAPERQA_PORT": str(port),
    }
    return ManagedProcess(
        "service",
        [sys.executable, "-m", "app"],
        port=port,
        ready_path="/health",
        log_path=log_path,
        env=full,
        cwd=PROJECT_ROOT,
        is_ready=health_ready,
        timeout_s=timeout_s,
        poll_s=0.05,
    )
