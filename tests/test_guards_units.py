"""Unit tests of the pure parts of the HTTP guards: JSON depth, token buckets, API-key parsing,
route templates for the request log."""

from __future__ import annotations

import json

import pytest

from app.http.middleware.api_key import bearer_token, is_public
from app.http.middleware.body_guard import MAX_JSON_DEPTH, json_depth
from app.http.middleware.rate_limit import TokenBuckets


@pytest.mark.parametrize(
    "body, depth",
    [
        (b"", 0),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', 0),  # few openers: not scanned
        (b"[" * 100 + b"]" * 100, MAX_JSON_DEPTH + 1),  # counting stops past the limit
        (b'{"a": "' + b"[" * 200 + b'"}', 1),  # brackets inside strings do not count
        (b'{"a": "\\"' + b"[" * 200 + b'"}', 1),  # nor after an escaped quote
        (b"[" * 40 + b"]" * 40 + b"[" * 40 + b"]" * 40, 40),
        (b'{"x":' * 70 + b"1" + b"}" * 70, MAX_JSON_DEPTH + 1),
    ],
)
def test_json_depth(body: bytes, depth: int) -> None:
    assert json_depth(body, MAX_JSON_DEPTH) == depth


def test_python_json_cannot_parse_what_json_depth_refuses() -> None:
    """Why the guard exists: the stdlib parser raises RecursionError (not a JSONDecodeError)."""
    with pytest.raises(RecursionError):
        json.loads("[" * 100_000 + "]" * 100_000)


def test_token_bucket_burst_then_rate() -> None:
    buckets = TokenBuckets(per_minute=60)  # one a second, bursts of 60
    assert all(buckets.take("a", now=0.0) == 0.0 for _ in range(60))
    wait = buckets.take("a", now=0.0)
    assert wait == pytest.approx(1.0)
    assert buckets.take("b", now=0.0) == 0.0  # other clients have their own bucket
    assert buckets.take("a", now=0.5) == pytest.approx(0.5)
    assert buckets.take("a", now=1.01) == 0.0
    assert buckets.take("a", now=1.02) > 0


def test_token_buckets_are_pruned() -> None:
    buckets = TokenBuckets(per_minute=60, max_clients=100)
    for i in range(1000):
        buckets.take(f"10.0.{i // 256}.{i % 256}", now=float(i))  # one request a second each
    assert len(buckets) <= 101


@pytest.mark.parametrize(
    "headers, token",
    [
        ([], None),
        ([(b"authorization", b"Bearer abc")], "abc"),
        ([(b"authorization", b"bearer   abc  ")], "abc"),
        ([(b"authorization", b"Basic abc")], None),
        ([(b"authorization", b"Bearer")], ""),
    ],
)
def test_bearer_token(headers, token) -> None:
    assert bearer_token({"headers": headers}) == token


@pytest.mark.parametrize(
    "method, path, public",
    [
        ("GET", "/health", True),
        ("GET", "/", True),
        ("GET", "/static/app.js", True),
        ("HEAD", "/health", True),
        ("POST", "/health", False),
        ("GET", "/search", False),
        ("GET", "/docs", False),
        ("GET", "/openapi.json", False),
        ("POST", "/chat", False),
        ("GET", "/staticfoo", False),
        ("GET", "/papers/x", False),
    ],
)
def test_public_paths(method: str, path: str, public: bool) -> None:
    assert is_public(method, path) is public


def test_route_template() -> None:
    from app.core.settings import Settings
    from app.http.app import create_app
    from app.http.middleware.request_log import RequestLogMiddleware, route_template

    app = create_app(Settings(_env_file=None))
    (routes,) = [m.kwargs["routes"] for m in app.user_middleware if m.cls is RequestLogMiddleware]

    def template(method: str, path: str) -> str:
        return route_template(routes, {"type": "http", "method": method, "path": path, "root_path": ""})

    assert template("GET", "/papers/arxiv:2301.00001") == "/papers/{paper_id:path}"
    assert template("GET", "/papers/arxiv:hep-th/9901001") == "/papers/{paper_id:path}"
    assert template("POST", "/v1/chat/completions") == "/v1/chat/completions"
    assert template("GET", "/search") == "/search"
    assert template("GET", "/static/app.js") == "/static"
    assert template("GET", "/nope") == "-"
    assert template("GET", "/chat") == "/chat"  # wrong method: still the route it names


async def test_llm_gate_refuses_past_its_queue_and_its_wait() -> None:
    """The model's gate: one at a time, one waiting; a third is busy at once, and a waiter that
    does not get its turn within wait_s is busy too (not left to time out in the queue)."""
    import asyncio

    from app.answering.llm import LLMBusy, _Gate

    gate = _Gate(concurrency=1, queue=1, wait_s=0.2)
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    with pytest.raises(LLMBusy, match="running or waiting"):
        async with gate.slot():
            pass
    with pytest.raises(LLMBusy, match="no turn within 0.2 s"):
        await waiter
    release.set()
    await holder
    async with gate.slot():  # free again: nothing leaked
        pass


def test_queue_wait_is_a_share_of_the_answer_deadline(settings_factory) -> None:
    """PAPERQA_LLM_QUEUE_WAIT_SHARE sets how long a request may wait for the model's turn."""
    from app.answering.llm import OpenAIBackend

    settings = settings_factory(
        llm_timeout_s=8.0,
        llm_queue_wait_share=0.25,
        openai_base_url="http://127.0.0.1:9/v1",
        llm_backend="openai",
    )
    assert OpenAIBackend(settings)._gate._wait_s == pytest.approx(2.0)
