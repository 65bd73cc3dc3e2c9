"""Config specs of ``python -m eval --configs``, the floor/top_k picking rule, the CLI parser."""

from __future__ import annotations

import pytest

from app.core.settings import Settings
from eval.__main__ import build_parser
from eval.config import ConfigError, default_config, parse_config
from eval.judge import parse_scores
from eval.suite import pick


def test_default_config_is_the_settings_class_defaults() -> None:
    d = default_config()
    fields = Settings.model_fields
    assert d.retrieval_mode == fields["retrieval_mode"].default
    assert d.chunk_size == fields["chunk_size"].default
    assert d.top_k == fields["top_k"].default
    assert d.relevance_floor == fields["relevance_floor"].default
    assert d.condense_mode == fields["condense_mode"].default
    assert d.answer_weight == fields["followup_answer_weight"].default
    assert parse_config("default") == d


def test_spec_round_trips_through_the_name() -> None:
    config = parse_config("bm25:c128:k8:extractive:f0.25:cond-off:aw0")
    assert config.answer_weight == 0.0 and config.name.endswith(":aw0")
    assert (config.retrieval_mode, config.chunk_size, config.top_k, config.llm_backend) == (
        "bm25",
        128,
        8,
        "extractive",
    )
    assert config.relevance_floor == 0.25 and config.condense_mode == "off"
    assert parse_config(config.name) == config
    assert config.collection == f"eval_c128_o{default_config().chunk_overlap}"


def test_retrieval_only_name_drops_what_plays_no_part() -> None:
    config = parse_config("dense:c254:retrieval-only")
    assert config.name == "dense:c254:retrieval-only"
    assert parse_config(config.name) == config


@pytest.mark.parametrize(
    "spec", ["hybrid:c9999", "sparse", "k0", "c200:o200", "fast", "cond-maybe", "aw3", "awx"]
)
def test_bad_specs_are_rejected(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(spec)


def test_config_settings_override_the_base(settings_factory) -> None:
    base = settings_factory()
    settings = parse_config("dense:c128:k3:extractive:f0.2:aw1").settings(base)
    assert settings.followup_answer_weight == 1.0
    assert settings.collection == "eval_c128_o32"
    assert (settings.chunk_size, settings.top_k, settings.retrieval_mode) == (128, 3, "dense")
    assert settings.relevance_floor == 0.2 and settings.llm_backend == "extractive"
    assert settings.chroma_path == base.chroma_path


def test_pick_keeps_the_preferred_value_within_the_tie_margin() -> None:
    assert pick([("a", 0.80), ("b", 0.805)], preferred="a") == "a"
    assert pick([("a", 0.80), ("b", 0.85)], preferred="a") == "b"
    assert pick([("a", None), ("b", 0.5)], preferred="a") == "b"
    assert pick([], preferred="a") == "a"


def test_judge_scores_are_parsed_leniently() -> None:
    assert parse_scores('Sure: {"faithfulness": 4, "relevance": 5}') == {"faithfulness": 4, "relevance": 5}
    assert parse_scores('{"faithfulness": 9, "relevance": 2.0}') == {"faithfulness": None, "relevance": 2}
    assert parse_scores("no json") == {"faithfulness": None, "relevance": None}


def test_cli_parses_every_command() -> None:
    parser = build_parser()
    args = parser.parse_args(["retrieval", "--set", "dev", "--configs", "bm25", "dense:c128", "--limit", "5"])
    assert args.command == "retrieval" and args.configs == ["bm25", "dense:c128"] and args.limit == 5
    args = parser.parse_args(["answers", "--url", "http://127.0.0.1:8000", "--configs", "default"])
    assert args.url == "http://127.0.0.1:8000"
    assert parser.parse_args(["calibrate", "--set", "dev"]).command == "calibrate"
    assert parser.parse_args(["report"]).chunk_sizes == [128, 200, 254]


async def test_judge_asks_an_openai_compatible_endpoint() -> None:
    import json

    import httpx

    from eval.judge import Judge

    seen: list[dict] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "judge",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": '{"faithfulness": 5, "relevance": 3}'},
                    }
                ],
            },
        )

    client = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    judge = Judge("http://judge.invalid/v1", "judge", http_client=client)
    scores = await judge.score("Which paper?", ["A passage."], "Paper X [1].")
    await judge.aclose()
    assert scores == {"faithfulness": 5, "relevance": 3}
    assert seen[0]["model"] == "judge" and "A passage." in seen[0]["messages"][0]["content"]


async def test_judge_failure_is_recorded_not_raised() -> None:
    import httpx

    from eval.judge import Judge

    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500, json={})))
    judge = Judge("http://judge.invalid/v1", "judge", http_client=client)
    judge._client = judge._client.with_options(max_retries=0)
    scores = await judge.score("q", [], "a")
    await judge.aclose()
    assert scores["faithfulness"] is None and "judge_error" in scores


def test_pick_prefers_the_smallest_change_among_near_best() -> None:
    from eval.suite import changed_fields

    shipped = ("hybrid", 254)
    candidates = [(("bm25", 200), 0.986), (("hybrid", 200), 0.957), (("hybrid", 254), 0.900)]
    # The shipped value is clearly behind; both others are within 0.042 of the best: the one
    # changing one setting wins over the one changing two.
    assert pick(candidates, shipped, tie=0.042, distance=changed_fields) == ("hybrid", 200)
    # With a tight margin only the best is "near".
    assert pick(candidates, shipped, tie=0.01, distance=changed_fields) == ("bm25", 200)
    assert pick([(3, 0.94), (5, 0.96), (8, 0.74)], 5, tie=0.04, distance=lambda a, b: abs(a - b)) == 5


def test_the_evidence_sweep_reads_the_tuning_sets_and_never_test() -> None:
    chosen = build_parser().parse_args(["evidence"]).set
    assert chosen.split("+") == ["dev", "dev-coverage", "dev-answers", "dev-details"]
    assert build_parser().parse_args(["retrieval"]).set == "dev"


def test_followup_configs_compare_the_answer_weight_around_the_shipped_one() -> None:
    from eval.suite import FOLLOWUP_ANSWER_WEIGHTS, followup_configs

    shipped = default_config()
    configs = followup_configs(shipped)
    assert configs[0] is shipped
    assert sorted(c.answer_weight for c in configs) == sorted(FOLLOWUP_ANSWER_WEIGHTS)
    assert len({c.name for c in configs}) == len(configs)  # each its own rows


def test_pick_keeps_the_shipped_answer_weight_within_a_question() -> None:
    """The follow-up answer weight is picked with the same rule as the other settings."""
    assert pick([(0.0, 0.857), (0.5, 0.869), (1.0, 0.871)], 0.5, tie=1 / 66) == 0.5
    assert pick([(0.0, 0.857), (0.5, 0.869), (1.0, 0.90)], 0.5, tie=1 / 66) == 1.0
    assert pick([(0.0, 0.90), (1.0, 0.80)], 0.5, tie=0.01) == 0.0  # shipped not compared


def test_followup_score_is_the_mean_over_the_sets_of_the_four_figures() -> None:
    from eval.suite import followup_score

    def summary(values: dict[str, float]) -> dict:
        return {"answers": {"all": {k: {"mean": v} for k, v in values.items()}}}

    one = summary(
        {"single_gold_cited": 1.0, "citation_precision": 0.5, "citation_recall": 1.0, "key_fact_match": 0.5}
    )
    two = summary(
        {"single_gold_cited": 0.5, "citation_precision": 0.5, "citation_recall": 0.5, "key_fact_match": 0.5}
    )
    assert followup_score([one, two]) == 0.625
    assert followup_score([]) is None
