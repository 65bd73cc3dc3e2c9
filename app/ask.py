"""``python -m app.ask "question"``: a streamed answer and its cited titles, without the server."""

from __future__ import annotations

import argparse
import asyncio
import sys

from app.answering.types import DeltaEvent, DoneEvent, ErrorEvent, SourcesEvent
from app.core import offline
from app.core.errors import run_cli
from app.core.settings import load_settings
from app.retrieval.queries import Turn


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.ask", description=__doc__)
    parser.add_argument("question", nargs="+", help="the question (follow-ups: see --after)")
    parser.add_argument(
        "--after",
        action="append",
        default=[],
        metavar="EARLIER_QUESTION",
        help="an earlier question of the conversation (repeatable, oldest first)",
    )
    parser.add_argument("--mode", choices=["dense", "bm25", "hybrid"])
    parser.add_argument("--top-k", type=int)
    parser.add_argument(
        "--backend", choices=["local", "openai", "extractive"], help="override PAPERQA_LLM_BACKEND"
    )
    parser.add_argument("--sources", action="store_true", help="also list every retrieved source")
    return parser


async def run(args: argparse.Namespace) -> int:
    from app.services import build_services

    settings = load_settings()
    if args.backend:
        settings = settings.model_copy(update={"llm_backend": args.backend})
    services = build_services(settings)  # PaperQAError: reported by run_cli with its exit code
    messages: list[Turn] = []
    for earlier in args.after:
        messages += [{"role": "user", "content": earlier}, {"role": "assistant", "content": ""}]
    messages.append({"role": "user", "content": " ".join(args.question)})
    messages = [m for m in messages if m["content"]]
    try:
        async for event in services.engine.events(messages, top_k=args.top_k, mode=args.mode):
            if isinstance(event, SourcesEvent) and args.sources:
                for s in event.sources:
                    print(f"  source [{s.n}] {s.title}", file=sys.stderr)
            elif isinstance(event, DeltaEvent):
                print(event.text, end="", flush=True)
            elif isinstance(event, ErrorEvent):
                print(f"\n[error: {event.message}]", file=sys.stderr)
            elif isinstance(event, DoneEvent):
                result = event.result
                if result.refused or result.fallback_reason or result.backend == "extractive":
                    print(result.answer)
                print()
                if result.citations:
                    print("Cited:")
                    for c in result.citations:
                        print(f"  [{c.marker}] {c.title}  ({c.paper_id})")
                elif not result.refused:
                    print("The answer cites no source. Sources given to the model:")
                    for s in result.sources:
                        print(f"  [{s.n}] {s.title}")
                t = result.timings
                print(
                    f"\n{result.backend} · {result.mode} · retrieve {t.retrieve_ms:.0f} ms · "
                    f"generate {t.generate_ms:.0f} ms · dropped citations {result.dropped_citations}",
                    file=sys.stderr,
                )
    finally:
        await services.aclose()
    return 0


def main(argv: list[str] | None = None) -> int:
    offline.configure()
    args = build_parser().parse_args(argv)
    return run_cli(lambda: asyncio.run(run(args)))


if __name__ == "__main__":
    sys.exit(main())
