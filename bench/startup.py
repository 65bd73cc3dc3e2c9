"""Start-up: process start to ``/health`` ready, with the index already built.

``python -m bench.startup`` starts ``python -m app`` five times (local LLM
loaded too) and reports the median and the worst.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench.common import save
from bench.processes import service as service_process

COMMAND = "python -m bench.startup"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    results = {}
    # The store's own embedding backend (the default): the service refuses a store built otherwise.
    for backend in ("onnx-int8",):
        times = []
        for _ in range(args.runs):
            with service_process(
                {"PAPERQA_EMBED_BACKEND": backend, "PAPERQA_LLM_BACKEND": "local"}
            ) as service:
                times.append(round(service.ready_s or 0.0, 2))
                rss = round(service.rss_mib())
        results[backend] = {
            "ready_s": times,
            "median_s": statistics.median(times),
            "max_s": max(times),
            "rss_mib_when_ready": rss,
        }
        print(backend, results[backend])
    save("startup", {"backends": results}, f"{COMMAND} --runs {args.runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
