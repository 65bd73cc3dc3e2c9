"""``python -m eval {retrieval,answers,calibrate,report}``: evaluate the service on the question sets.

- ``retrieval``  retrieval only (no LLM): compare modes / chunk sizes / condensing; fast.
- ``answers``    retrieval and answers, in process or against a running server (``--url``).
- ``calibrate``  choose the coverage thresholds on dev (rules against a logistic regression); prints them.
- ``evidence``   sweep the evidence and paper-selection settings on the tuning sets;
- ``claims``     the claim check on the labelled answer sentences (``--build``: new candidates);
- ``report``     the full comparison on dev, the held-out test numbers of the shipped defaults;
                 writes ``docs/evaluation.md`` and ``docs/evaluation.png``.

Every command writes a run folder ``eval/runs/<timestamp>/``: ``questions.jsonl`` (one row per
question and config), ``summary.json``, ``report.md`` and ``chart.png``.
Config specs (``--configs``): see ``eval/config.py``, e.g. ``hybrid:c200:k5:local``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from datetime import datetime
from pathlib import Path

from app.core import offline
from app.core.errors import run_cli
from app.core.settings import PROJECT_ROOT, Settings
from eval.config import BACKENDS, Config, default_config, parse_config
from eval.questions import load_questions, select

RUNS_DIR = Path(__file__).resolve().parent / "runs"
DOCS_DIR = PROJECT_ROOT / "docs"
BUNDLED_CORPUS = PROJECT_ROOT / "data" / "corpus"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, configs: bool = True) -> None:
        p.add_argument("--limit", type=int, help="only the first N questions (of each set)")
        p.add_argument("--ids", nargs="+", help="only these question ids")
        p.add_argument("--types", nargs="+", help="only these question types")
        p.add_argument("--out", type=Path, help="run folder (default: eval/runs/<timestamp>)")
        p.add_argument(
            "--corpus",
            type=Path,
            nargs="+",
            help="corpus files/folders (default: the bundled data/corpus, which the "
            "question sets are written for)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        if configs:
            p.add_argument("--set", default="dev", help="dev, test, or a path to a JSONL set")

    retrieval = sub.add_parser("retrieval", help="retrieval-only comparison (no LLM)")
    common(retrieval)
    retrieval.add_argument(
        "--configs",
        nargs="+",
        default=["bm25", "dense", "hybrid"],
        help="config specs (default: the three modes at the shipped chunk size)",
    )

    answers = sub.add_parser("answers", help="retrieval and answers")
    common(answers)
    answers.add_argument(
        "--configs", nargs="+", default=["default"], help="config specs (default: the shipped defaults)"
    )
    answers.add_argument("--url", help="evaluate a running server (POST {url}/chat) instead of in process")
    answers.add_argument("--api-key", default="", help="bearer token for --url, if the server wants one")
    answers.add_argument("--judge-url", help="OpenAI-compatible base URL of an LLM judge (optional)")
    answers.add_argument("--judge-model", help="model name for the judge")
    answers.add_argument("--judge-api-key", default="", help="API key for the judge endpoint")

    calibrate = sub.add_parser("calibrate", help="choose the coverage thresholds on dev")
    common(calibrate)
    calibrate.add_argument(
        "--config",
        default="default",
        help="config whose chunking / condensing to calibrate (default: shipped)",
    )

    evidence = sub.add_parser(
        "evidence", help="sweep the evidence and paper-selection settings on the tuning sets"
    )
    common(evidence)
    evidence.set_defaults(set="dev+dev-coverage+dev-answers+dev-details")  # the tuning questions; never test

    claims = sub.add_parser("claims", help="the claim check on the labelled sentences of eval/claims/")
    claims.add_argument(
        "--build", action="store_true", help="write candidate sentences to label (loads the local model)"
    )
    claims.add_argument("--per-set", type=int, default=15, help="questions per set for --build (default 15)")
    claims.add_argument("--quiet", action="store_true", help="no progress bars")
    claims.add_argument("--corpus", type=Path, nargs="+", help="corpus (default: the bundled one)")

    report = sub.add_parser("report", help="the full comparison; writes docs/evaluation.md")
    common(report, configs=False)
    report.add_argument(
        "--chunk-sizes",
        type=int,
        nargs="+",
        default=[128, 200, 254],
        help="chunk sizes to compare (default: 128 200 254)",
    )
    report.add_argument(
        "--docs", type=Path, default=DOCS_DIR, help="where evaluation.md / evaluation.png go (default: docs/)"
    )
    report.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an earlier run folder: configs already there are not run again "
        "(also re-renders the document from a finished run)",
    )
    report.add_argument(
        "--llm-backend",
        choices=["local", "extractive", "openai"],
        default="local",
        help="backend of the shipped config's answers (default: the bundled local model)",
    )
    return parser


def base_settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    corpus = args.corpus or [BUNDLED_CORPUS]
    return settings.model_copy(update={"corpus_paths": [p.resolve() for p in corpus]})


def run_dir(args: argparse.Namespace) -> Path:
    path = args.out or RUNS_DIR / datetime.now().strftime("%Y%m%d-%H%M%S")
    path.mkdir(parents=True, exist_ok=True)
    return path


def questions_for(args: argparse.Namespace, set_name: str):
    return select(load_questions(set_name), ids=args.ids, types=args.types, limit=args.limit)


def parse_configs(specs: list[str], answers: bool) -> list[Config]:
    configs = [parse_config(spec) for spec in specs]
    if not answers:
        configs = [c.with_(answers=False) for c in configs]
    return list({c.name: c for c in configs}.values())


def with_server_identity(config: Config, url: str, api_key: str) -> Config:
    """The config as the server at ``url`` runs it: its backend and model, read from ``/health``
    (not this machine's defaults: a server on the extractive backend is labelled extractive)."""
    from app.client import server_identity

    server = server_identity(url, api_key)
    backend, model = server.get("llm_backend") or "unknown", server.get("llm_model")
    label = f"{config.name} via {url} ({backend}{f', {model}' if model else ''})"
    changes: dict[str, object] = {"label": label}
    if backend in BACKENDS:
        changes["llm_backend"] = backend
    return config.with_(**changes)


async def cmd_compare(args: argparse.Namespace, answers: bool) -> int:
    from eval import tables as rp
    from eval.runner import Runner, config_record, run_all

    configs = parse_configs(args.configs, answers)
    if getattr(args, "url", None):
        # The server answers with its own index, floor, backend and condensing; only the mode and
        # top_k of the config are sent (top_k only when it is not the settings' own: the server then
        # reads top_k_many papers for a question asking for several). The retrieval part still runs
        # here, on the local index.
        configs = [with_server_identity(c, args.url, getattr(args, "api_key", "")) for c in configs]
    questions = questions_for(args, args.set)
    out = run_dir(args)
    judge = None
    if answers and (args.judge_url or args.judge_model):
        if not (args.judge_url and args.judge_model):
            print("error: --judge-url and --judge-model go together", file=sys.stderr)
            return 2
        from eval.judge import Judge

        judge = Judge(args.judge_url, args.judge_model, args.judge_api_key)
    runner = Runner(
        base_settings(args),
        progress=not args.quiet,
        url=getattr(args, "url", None),
        api_key=getattr(args, "api_key", ""),
        judge=judge,
    )
    writer = rp.RowWriter(out / "questions.jsonl")
    set_name = Path(args.set).stem if args.set not in ("dev", "test") else args.set
    try:
        await run_all(runner, configs, questions, set_name, writer)
    finally:
        writer.close()
        await runner.aclose()
        if judge is not None:
            await judge.aclose()
    rows = rp.read_rows(out / "questions.jsonl")
    summaries = rp.summarize(rows, {c.name: config_record(c) for c in configs})
    title = f"{'Answers' if answers else 'Retrieval'} on {set_name}" + (
        f" via {args.url}" if getattr(args, "url", None) else ""
    )
    outputs = rp.write_run(out, summaries, title)
    print(rp.retrieval_comparison(summaries))
    if answers:
        print()
        print(rp.answer_comparison(summaries))
    print(f"\nrun folder: {out}  ({', '.join(p.name for p in outputs.values())}, questions.jsonl)")
    return 0


async def cmd_calibrate(args: argparse.Namespace) -> int:
    """Choose the coverage thresholds on a set (dev): the rules of :mod:`app.retrieval.coverage`
    from a grid, compared by 5-fold cross-validation with a logistic regression over the signals."""
    from app.retrieval.coverage import CoverageModel
    from eval import coverage as cv
    from eval import tables as rp
    from eval.runner import Runner, run_all

    config = parse_config(args.config).with_(answers=False)
    questions = questions_for(args, args.set)
    out = run_dir(args)
    base = base_settings(args)
    runner = Runner(base, progress=not args.quiet)
    writer = rp.RowWriter(out / "questions.jsonl")
    try:
        rows = (await run_all(runner, [config], questions, args.set, writer))[config.name]
    finally:
        writer.close()
        await runner.aclose()
    if not any(r["type"] == "out_of_scope" for r in rows) or all(r["type"] == "out_of_scope" for r in rows):
        print("error: calibration needs both answerable and out_of_scope questions", file=sys.stderr)
        return 2
    current = CoverageModel.from_settings(config.settings(base))
    folds = cv.cross_validate(rows)
    winner = max(folds, key=lambda kind: cv.rank_key(folds[kind]))
    fitted = {kind: fit(rows) for kind, fit in cv.FITS.items()}
    model, on_set = fitted[winner]
    report = {
        "config": config.name,
        "set": args.set,
        "current": {"model": cv.model_record(current), "outcome": cv.outcome_of(rows, current).as_dict()},
        "cross_validated": {kind: o.as_dict() for kind, o in folds.items()},
        "fitted": {
            kind: {"model": cv.model_record(m), "outcome": o.as_dict()} for kind, (m, o) in fitted.items()
        },
        "chosen": winner,
    }
    rp.write_json(out / "calibration.json", report)
    print(f"config {config.name} on {args.set}: {len(rows)} questions")
    lines = [("current settings", cv.outcome_of(rows, current))]
    lines += [(f"{kind} (5-fold CV)", o) for kind, o in folds.items()]
    lines += [(f"{kind} (fitted)", o) for kind, (_, o) in fitted.items()]
    for label, o in lines:
        print(
            f"{label:>20}: balanced accuracy {o.balanced_accuracy:.3f}  answerable refused "
            f"{o.answerable_refused}/{o.answerable}  named refused {o.named_refused}/{o.named}  "
            f"out-of-scope refused {o.out_of_scope_refused}/{o.out_of_scope} "
            f"(near-topic {o.near_topic_refused}/{o.near_topic})"
        )
    print(f"chosen by cross-validation: {winner}; its settings, fitted on all of {args.set}:")
    print("\n".join(cv.settings_lines(model)))
    print(f"run folder: {out}")
    return 0


async def cmd_report(args: argparse.Namespace) -> int:
    from eval import tables as rp
    from eval.document import render
    from eval.runner import Runner, config_record
    from eval.suite import FOLLOWUPS, Suite

    dev, test = questions_for(args, "dev"), questions_for(args, "test")
    if args.resume:
        if not (args.resume / "questions.jsonl").is_file():
            print(f"error: {args.resume}/questions.jsonl not found", file=sys.stderr)
            return 2
        args.out = args.resume
    out = run_dir(args)
    previous = rp.read_rows(out / "questions.jsonl") if args.resume else []
    runner = Runner(base_settings(args), progress=not args.quiet)
    writer = rp.RowWriter(out / "questions.jsonl")
    # More coverage tuning questions, with the same --ids/--types/--limit selection as dev and test.
    extra = questions_for(args, "dev-coverage")
    suite = Suite(
        runner,
        dev,
        test,
        args.chunk_sizes,
        writer,
        local_backend=args.llm_backend,
        coverage_extra=extra,
        answers_extra=[*questions_for(args, "dev-answers"), *questions_for(args, "dev-details")],
        followups_extra={name: questions_for(args, name) for name in FOLLOWUPS},
    )
    suite.preload(previous)
    if args.resume and (out / "summary.json").is_file():
        suite.earlier_timing = json.loads((out / "summary.json").read_text(encoding="utf-8")).get(
            "timing_s", {}
        )
    try:
        result = await suite.run()
    finally:
        writer.close()
        await runner.aclose()
    summaries = [suite.summary(s, suite.configs[name]) for (s, name) in suite.rows]
    extra = {
        "coverage": coverage_record(result["coverage"]),
        "recommended": {
            **config_record(result["recommended"].config),
            "reasons": result["recommended"].reasons,
        },
        "default": config_record(default_config()),
        "timing_s": suite.total_timing(),
        "load_averages": suite.loads,
        "dense_recall": suite.dense_recall,
        "evidence": result.get("evidence"),
    }
    rp.write_run(out, summaries, "Evaluation run", extra=extra)
    args.docs.mkdir(parents=True, exist_ok=True)
    shipped = [suite.summary("dev", result["local_default"]), suite.summary("test", result["local_default"])]
    retrieval_part = [suite.summary("dev", c) for c in [*result["grid"], *result["condense"]]]
    answer_part = [suite.summary("dev", c) for c in result["answer_configs"]]
    unique = lambda xs: list({(x["set"], x["name"]): x for x in xs}.values())  # noqa: E731
    rp.chart(
        unique(retrieval_part + shipped),
        args.docs / "evaluation.png",
        "paperqa-lite evaluation (dev unless marked test)",
        answer_summaries=unique(answer_part + shipped),
    )
    (args.docs / "evaluation.md").write_text(render(suite, result, out.name, dev, test), encoding="utf-8")
    shutil.copyfile(args.docs / "evaluation.md", out / "evaluation.md")
    print(f"wrote {args.docs / 'evaluation.md'}, {args.docs / 'evaluation.png'}; run folder {out}")
    held = result["coverage"]["held_out"]["test"]
    print(f"coverage on test (shipped): {held.as_dict()}")
    rec = result["recommended"].config
    print(
        f"recommended: mode {rec.retrieval_mode}, chunk {rec.chunk_size}, top_k {rec.top_k}, "
        f"coverage model {result['coverage']['recommended'].kind}, condense {rec.condense_mode}"
    )
    return 0


async def cmd_evidence(args: argparse.Namespace) -> int:
    from eval import evidence as ev
    from eval.runner import Runner

    runner = Runner(base_settings(args), progress=not args.quiet)
    config = default_config()
    try:
        services = runner.services(config)
        summary = await asyncio.to_thread(
            ev.sweep_summary, services, questions_for(args, args.set), config.settings(runner.base), 10
        )
    finally:
        await runner.aclose()
    print(f"{summary['questions']} answerable {args.set} questions; {summary['settings']} settings")
    print("shipped:", {k: round(v, 3) for k, v in summary["shipped"].items()})
    for setting, figures in summary["top"]:
        print({k: round(v, 3) for k, v in figures.items()}, setting)
    print("best, as settings:")
    print("\n".join(summary["lines"]))
    return 0


async def cmd_claims(args: argparse.Namespace) -> int:
    from eval import claims as cl
    from eval.runner import Runner

    runner = Runner(base_settings(args), progress=not args.quiet)
    config = default_config()
    try:
        if args.build:
            services = runner.services(config)
            answerer = runner.answerer(config.with_(llm_backend="local"))
            services.engine.answerer = answerer  # the evaluation's answerer, with the local model
            rows: list = []
            for set_name in ("dev", "test"):
                answerable = [q for q in load_questions(set_name) if q.answerable and q.type != "followup"]
                step = max(1, len(answerable) // args.per_set)
                picked = answerable[::step][: args.per_set]
                rows += await cl.build_candidates(services, picked, set_name)
            cl.write_rows(cl.CANDIDATES, rows)
            counts = {o: sum(r.origin == o for r in rows) for o in cl.ORIGINS}
            print(f'wrote {cl.CANDIDATES}: {len(rows)} sentences {counts}; label the model\'s (label "?")')
            return 0
        result = cl.evaluate(runner, config)
    finally:
        await runner.aclose()
    print(json.dumps(result, indent=2))
    print(
        f"calibrated on dev: PAPERQA_CLAIM_MIN_SIMILARITY={result['calibrated']:g} (shipped {result['shipped']:g})"
    )
    return 0


def coverage_record(coverage: dict) -> dict:
    """The coverage part of a report run as JSON."""
    from eval.coverage import model_record

    held = coverage["held_out"]
    return {
        "cross_validated": {k: o.as_dict() for k, o in coverage["cross_validated"].items()},
        "fitted": {
            k: {"model": model_record(m), "outcome": o.as_dict()} for k, (m, o) in coverage["fitted"].items()
        },
        "recommended": model_record(coverage["recommended"]),
        "shipped": model_record(held["model"]),
        "dev": held["dev"].as_dict(),
        "test": held["test"].as_dict(),
        "dev_types": held["dev_types"],
        "test_types": held["test_types"],
        "ablation": [
            {
                "left_out": a["left_out"],
                "model": model_record(a["model"]),
                "dev": a["dev"].as_dict(),
                "test": a["test"].as_dict() if a["test"] else None,
            }
            for a in held["ablation"]
        ],
    }


def run(args: argparse.Namespace) -> int:
    if args.command == "retrieval":
        return asyncio.run(cmd_compare(args, answers=False))
    if args.command == "answers":
        return asyncio.run(cmd_compare(args, answers=True))
    if args.command == "calibrate":
        return asyncio.run(cmd_calibrate(args))
    if args.command == "evidence":
        return asyncio.run(cmd_evidence(args))
    if args.command == "claims":
        return asyncio.run(cmd_claims(args))
    return asyncio.run(cmd_report(args))


def main(argv: list[str] | None = None) -> int:
    offline.configure()  # before chromadb / transformers are first imported
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
