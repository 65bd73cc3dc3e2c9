"""``python -m ingest [PATH ...] [--format F] [--reset] [--ray [ADDRESS] [--workers N]]``: build or
update the index (``--ray``: the embedding on Ray workers, :mod:`ingest.distributed`)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from app.core import offline
from app.core.errors import StoreUnavailable, run_cli
from app.core.settings import Settings, load_settings
from ingest.parsers import PARSERS
from ingest.pipeline import IngestSummary, ingest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Parse paper corpora, chunk, embed and write them into the Chroma store. "
        "Re-running on the same input adds nothing; a changed abstract replaces that paper.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="corpus files or folders (default: PAPERQA_CORPUS_PATHS, the bundled corpus)",
    )
    parser.add_argument(
        "--format",
        choices=sorted(PARSERS),
        help="force a format (default: .txt = listing dump; JSON lines with arXiv fields = arxiv; "
        "other JSON lines = jsonl)",
    )
    parser.add_argument("--reset", action="store_true", help="delete the collection and rebuild it")
    parser.add_argument("--collection", help="collection name (default: PAPERQA_COLLECTION)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing if the collection already has papers (used by `make run`)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL_RAY,
        metavar="ADDRESS",
        help="embed on Ray workers (pip install -e .[ray]): without ADDRESS, a local Ray on 127.0.0.1 "
        "with --workers CPUs; with ADDRESS (HOST:PORT of a Ray head, or auto), that cluster",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="with --ray: embedding workers (default: 2 for a local Ray, one per node with CPUs of a cluster)",
    )
    return parser


LOCAL_RAY = "local"
RAY_ADDRESS = re.compile(r"auto|ray://\S+|[\w.-]+:\d+|\[[0-9a-fA-F:]+\]:\d+")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ray not in (None, LOCAL_RAY) and not RAY_ADDRESS.fullmatch(args.ray):
        # ``--ray corpus.jsonl``: a path, not an address (an address is HOST:PORT, auto or ray://...)
        args.paths.insert(0, Path(args.ray))
        args.ray = LOCAL_RAY
    if args.workers is not None and (args.ray is None or args.workers < 1):
        parser.error("--workers N needs --ray and N >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    offline.configure()
    return run_cli(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.collection:
        settings = settings.model_copy(update={"collection": args.collection})
    if args.if_missing and not args.reset and _has_papers(settings):
        print(f"Index {settings.collection!r} already built; skipping ingestion.")
        return 0
    summary: IngestSummary
    if args.ray is not None:
        from ingest.distributed import ingest_on_ray

        summary = ingest_on_ray(
            settings,
            args.paths or None,
            fmt=args.format,
            reset=args.reset,
            progress=not args.quiet,
            address=None if args.ray == LOCAL_RAY else args.ray,
            workers=args.workers,
        )
    else:
        summary = ingest(
            settings, args.paths or None, fmt=args.format, reset=args.reset, progress=not args.quiet
        )
    print(summary.render())
    return 1 if summary.papers == 0 else 0


def _has_papers(settings: Settings) -> bool:
    """True when the index is built; then its search configuration is (re)applied, cheaply."""
    from app.core.store import apply_search_config, get_collections, make_client

    try:
        chunks, papers = get_collections(make_client(settings), settings.collection)
    except StoreUnavailable:
        return False
    if papers.count() == 0:
        return False
    apply_search_config(chunks, settings)
    # A store built before the BM25 index was persisted (or whose index is stale): build it now.
    from ingest.pipeline import finish_lexical_index

    print(finish_lexical_index(settings, chunks, changed=False))
    return True


if __name__ == "__main__":
    sys.exit(main())
