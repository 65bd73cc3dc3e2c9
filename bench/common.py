"""Shared pieces of the benchmarks: machine description, result files, percentiles, subprocesses."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app.core.settings import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
WORK_DIR = PROJECT_ROOT / "var" / "bench"


# CPU features that change what the int8 (ONNX Runtime) and llama.cpp kernels compute.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags() -> list[str]:
    """The relevant flags this CPU reports (Linux ``/proc/cpuinfo``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in CPU_FLAGS if flag in present]
    except OSError:
        pass
    return []


def onnxruntime_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        return None


def describe_machine(info: dict[str, Any]) -> str:
    """One line for a report: CPU, its int8-relevant flags, ONNX Runtime, embedding backend."""
    flags = info.get("cpu_flags")
    flag_text = (
        ", ".join(flags) if flags else ("none of " + "/".join(CPU_FLAGS) if flags == [] else "not recorded")
    )
    return (
        f"CPU {info.get('cpu') or 'unknown'} (flags: {flag_text}); ONNX Runtime "
        f"{info.get('onnxruntime') or 'not recorded'}; embedding backend {info.get('embed_backend') or 'not recorded'}"
    )


def machine() -> dict[str, Any]:
    from app.core.settings import Settings

    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "cpu_flags": cpu_flags(),
        "onnxruntime": onnxruntime_version(),
        "embed_backend": Settings().embed_backend,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg()[0],
    }


def save(name: str, data: dict[str, Any], command: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "command": command,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(PROJECT_ROOT)}")
    return path


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``eval.metrics.percentile``); NaN when there are no values."""
    from eval.metrics import percentile as nearest_rank

    value = nearest_rank(values, q)
    return float("nan") if value is None else value


def run_json(module_args: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> dict:
    """Run ``python -m bench.<...>`` in a fresh process (clean peak RSS) and read its JSON line."""
    completed = subprocess.run(
        [sys.executable, *module_args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=PROJECT_ROOT,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{module_args} failed:\n{completed.stderr[-4000:]}")
    last = [line for line in completed.stdout.splitlines() if line.startswith("{")][-1]
    return json.loads(last)
