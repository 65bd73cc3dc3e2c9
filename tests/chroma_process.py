"""A ``chroma run`` server on 127.0.0.1 that a test can kill and start again on the same port and
data folder (conftest's ``chroma_server`` is shared by the whole session, so it cannot)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

START_TIMEOUT_S = 60.0


class ChromaProcess:
    def __init__(self, data_dir: Path, port: int, log_path: Path, env: dict[str, str]) -> None:
        self.host, self.port = "127.0.0.1", port
        self.data_dir, self.log_path, self.env = data_dir, log_path, env
        self.process: subprocess.Popen | None = None

    @property
    def heartbeat_url(self) -> str:
        return f"http://{self.host}:{self.port}/api/v2/heartbeat"

    def start(self) -> "ChromaProcess":
        chroma_cli = Path(sys.executable).parent / "chroma"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(chroma_cli), "run", "--host", self.host, "--port", str(self.port),
                 "--path", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.data_dir.parent, env=self.env,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chroma exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.heartbeat_url, timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"chroma not up after {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no goodbye, like a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, but nothing answers (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot stop
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
