"""``python -m bench [all|report|NAME ...]``: run benchmarks, then write docs/performance.md.

Each benchmark is its own module with its own command (``python -m bench.ingest`` ...), writes
``bench/results/<name>.json`` with the command and the machine, and can be run alone;
``report`` renders every result file into docs/performance.md.
"""

from __future__ import annotations

import importlib
import sys

# Arguments of each run of a benchmark under ``all`` (default: one run, no arguments).
RUNS = {
    "scale": [
        ["--papers", "10000"],
        ["--papers", "10000", "--server", "--approx-vectors"],
        ["--papers", "100000", "--approx-vectors"],
    ],
}
ORDER = ["ingest", "embedder", "startup", "search", "answers", "concurrency", "scale"]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or ["all"]
    names = ORDER if args == ["all"] else [a for a in args if a != "report"]
    for name in names:
        if name not in ORDER:
            print(f"error: unknown benchmark {name!r}; choose from {ORDER}, all, report", file=sys.stderr)
            return 2
        print(f"== bench.{name}", flush=True)
        for run_args in RUNS.get(name, [[]]):
            code = importlib.import_module(f"bench.{name}").main(run_args)
            if code:
                return code
    from bench.report import main as report

    return report()


if __name__ == "__main__":
    sys.exit(main())
