"""The service over a Chroma SERVER that dies and comes back (a real ``chroma run`` on 127.0.0.1,
SIGKILLed and restarted on the same port and data folder), and a service started while it is down.

While the store is down: ``/health`` says not ready (a heartbeat with a short timeout), ``/search``,
``/chat`` and ``/papers`` answer 503 with the reason; when it is back the service recovers by
itself. A service started while the store is down starts anyway (not ready) and becomes ready once
the store is up.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import httpx
import pytest

import app.http.app as main
from app.http.app import create_app
from app.services import build_services
from tests.corpus_tools import ids_of, real_papers, write_jsonl
from tests.helpers import LiveServer, hermetic_settings
from tests.sse import parse_sse

pytestmark = pytest.mark.slow

QUESTION = "Which papers quantize vision transformers after training?"
BOUND_S = 30.0


def small_corpus(tmp_path) -> list[dict]:
    quantization = [p for p in real_papers() if "quantiz" in (p.title + p.abstract).lower()][:12]
    papers = quantization + [p for p in real_papers()[:24] if p not in quantization][:12]
    records = [{"id": p.id, "title": p.title, "abstract": p.abstract} for p in papers]
    write_jsonl(tmp_path / "small.jsonl", records)
    return records


def server_settings(chroma, tmp_path, **overrides):
    values = dict(
        chroma_host=chroma.host,
        chroma_port=chroma.port,
        collection="outage",
        chroma_path=tmp_path / "unused",
        llm_backend="extractive",
        store_timeout_s=3.0,
        store_retry_s=1.0,
        rate_limit_per_minute=0,
        index_refresh_s=0,
    )
    values.update(overrides)
    return hermetic_settings(**values)


def ingest_into(settings, tmp_path, embed_model, count_tokens) -> list[dict]:
    from ingest.pipeline import ingest

    records = small_corpus(tmp_path)
    summary = ingest(
        settings,
        [tmp_path / "small.jsonl"],
        embed_model=embed_model,
        count_tokens=count_tokens,
        progress=False,
    )
    assert summary.new == len(records), summary.render()
    return records


def wait_for(check: Callable[[], bool], what: str, bound_s: float = BOUND_S) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > bound_s:
            raise AssertionError(f"not {what} after {bound_s:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - started


def ready(http: httpx.Client) -> bool:
    response = http.get("/health")
    return response.status_code == 200 and response.json()["ready"] is True


def not_ready(http: httpx.Client) -> bool:
    response = http.get("/health")
    return response.status_code == 503 and response.json()["ready"] is False


def test_store_dies_and_comes_back(chroma_process, tmp_path, embed_model, count_tokens) -> None:
    settings = server_settings(chroma_process, tmp_path)
    records = ingest_into(settings, tmp_path, embed_model, count_tokens)
    paper_id = ids_of(records)[0]
    services = build_services(settings, embed_model=embed_model)
    with (
        LiveServer(create_app(services=services)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        assert ready(http)
        before = http.get("/search", params={"q": QUESTION}).json()["results"]
        assert before

        chroma_process.kill()
        started = time.monotonic()
        health = http.get("/health")
        assert time.monotonic() - started < 5, "the health check waited on a dead store"
        assert health.status_code == 503 and health.json()["ready"] is False
        for response in (
            http.get("/search", params={"q": QUESTION}),
            http.post("/chat", json={"messages": [{"role": "user", "content": QUESTION}]}),
            http.get(f"/papers/{paper_id}"),
            http.post(
                "/v1/chat/completions",
                json={"model": "paperqa", "messages": [{"role": "user", "content": QUESTION}]},
            ),
        ):
            assert response.status_code == 503, response.text
            detail = response.json()["detail"]
            assert "paper store is unavailable" in detail and str(chroma_process.port) in detail, detail
            assert "Traceback" not in response.text
        stream = http.post(
            "/chat", json={"messages": [{"role": "user", "content": QUESTION}], "stream": True}
        )
        events = parse_sse(stream.text)
        assert [name for name, _ in events] == ["error"]
        assert "paper store is unavailable" in json.loads(events[0][1])["message"]

        chroma_process.start()  # same port, same data
        wait_for(lambda: ready(http), "ready again")
        after = http.get("/search", params={"q": QUESTION})
        assert after.status_code == 200
        assert [r["paper_id"] for r in after.json()["results"]] == [r["paper_id"] for r in before]
        assert http.get(f"/papers/{paper_id}").status_code == 200
        assert (
            http.post("/chat", json={"messages": [{"role": "user", "content": QUESTION}]}).status_code == 200
        )


def test_service_starts_while_the_store_is_down(
    chroma_process, tmp_path, embed_model, count_tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = server_settings(chroma_process, tmp_path)
    ingest_into(settings, tmp_path, embed_model, count_tokens)
    chroma_process.kill()

    real_build = main.build_services
    attempts: list[float] = []

    def build(s):  # the real loader, with the session's embedding model
        attempts.append(time.monotonic())
        return real_build(s, embed_model=embed_model)

    monkeypatch.setattr(main, "build_services", build)
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        assert not_ready(http)
        response = http.get("/search", params={"q": QUESTION})
        assert response.status_code == 503 and "not ready" in response.json()["detail"]
        assert "Chroma server" in response.json()["detail"]
        wait_for(lambda: len(attempts) >= 3, "retrying")  # it keeps trying, every store_retry_s
        assert not_ready(http)

        chroma_process.start()
        wait_for(lambda: ready(http), "ready once the store is up")
        response = http.get("/search", params={"q": QUESTION})
        assert response.status_code == 200 and response.json()["results"]


def test_a_hung_store_does_not_hang_the_service(chroma_process, tmp_path, embed_model, count_tokens) -> None:
    """SIGSTOPped server: connections are accepted, nothing answers. The health check gives up
    after its heartbeat timeout, requests after PAPERQA_STORE_TIMEOUT_S (3 s here): 503, no hang."""
    settings = server_settings(chroma_process, tmp_path)
    ingest_into(settings, tmp_path, embed_model, count_tokens)
    services = build_services(settings, embed_model=embed_model)
    with (
        LiveServer(create_app(services=services)) as server,
        httpx.Client(base_url=server.url, timeout=20) as http,
    ):
        assert ready(http)
        chroma_process.pause()
        try:
            started = time.monotonic()
            health = http.get("/health")
            assert time.monotonic() - started < 2.0 + 2.0, "the health check waited on a hung store"
            assert health.status_code == 503 and health.json()["ready"] is False
            started = time.monotonic()
            response = http.get("/search", params={"q": QUESTION})
            assert time.monotonic() - started < settings.store_timeout_s + 3.0
            assert response.status_code == 503, response.text
            assert "paper store is unavailable" in response.json()["detail"]
            assert "Timeout" in response.json()["detail"]
        finally:
            chroma_process.resume()
        wait_for(lambda: ready(http), "ready again")
        assert http.get("/search", params={"q": QUESTION}).status_code == 200


def test_a_hung_store_does_not_take_the_workers(chroma_process, tmp_path, embed_model, count_tokens) -> None:
    """Issue 16, finding 4: with the server SIGSTOPped and 60 concurrent searches, main's /health
    took 9.6 s and searches up to twice the store timeout, every worker thread waiting on the store.
    Now store calls run in a bounded pool (PAPERQA_STORE_MAX_CONCURRENCY, 4 here) with a deadline
    per call: the calls that got a slot fail after the timeout, the others get 503 "busy" at once,
    and /health, which never waits behind them, answers within its 1.5 s deadline.

    60 concurrent clients: 40 searches (each embeds its query first: CPU-bound, so their timing
    depends on the machine) and 20 paper look-ups (a store call and nothing else: their timing is
    the store's). Bounds have margins for a loaded 2-core machine; main fails them by seconds."""
    settings = server_settings(chroma_process, tmp_path, store_timeout_s=4.0, store_max_concurrency=4)
    records = ingest_into(settings, tmp_path, embed_model, count_tokens)
    services = build_services(settings, embed_model=embed_model)
    outcomes: list[tuple[str, int, float, str, str | None]] = []

    def call(url: str, path: str, params: dict[str, str]) -> None:
        started = time.monotonic()
        response = httpx.get(f"{url}{path}", params=params, timeout=60)
        outcomes.append(
            (
                path.split("/")[1],
                response.status_code,
                time.monotonic() - started,
                response.json().get("detail", ""),
                response.headers.get("retry-after"),
            )
        )

    with (
        LiveServer(create_app(services=services)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        assert ready(http)
        chroma_process.pause()
        try:
            requests = [("/search", {"q": QUESTION})] * 40 + [(f"/papers/{records[0]['id']}", {})] * 20
            clients = [threading.Thread(target=call, args=(server.url, *r)) for r in requests]
            for client in clients:
                client.start()
            health_s = []
            for _ in range(3):
                time.sleep(0.3)
                started = time.monotonic()
                health = http.get("/health")
                health_s.append(time.monotonic() - started)
                assert health.status_code == 503 and health.json()["ready"] is False
            for client in clients:
                client.join(timeout=60)
            assert not any(client.is_alive() for client in clients), "a request hung"
        finally:
            chroma_process.resume()
        report = sorted((kind, round(seconds, 1), detail[:50]) for kind, _, seconds, detail, _ in outcomes)
        assert max(health_s) < 2.0 + 1.0, f"/health waited behind the requests: {health_s}"
        assert len(outcomes) == 60 and {status for _, status, *_ in outcomes} == {503}, report
        papers_s = max(seconds for kind, _, seconds, *_ in outcomes if kind == "papers")
        assert papers_s < settings.store_timeout_s + 1.5, report
        searches_s = max(seconds for kind, _, seconds, *_ in outcomes if kind == "search")
        assert searches_s < 2 * settings.store_timeout_s, report
        busy = [o for o in outcomes if "retry in a few seconds" in o[3]]
        # The gate's deadline and the HTTP client's own timeout are both the store timeout: either
        # may fire first.
        timed_out = [o for o in outcomes if "did not answer within" in o[3] or "Timeout" in o[3]]
        print(
            f"health {health_s}, papers max {papers_s:.1f} s, searches max {searches_s:.1f} s, "
            f"busy {len(busy)}, timed out {len(timed_out)}"
        )
        assert busy and timed_out and len(busy) + len(timed_out) == 60, report
        assert all(retry is not None for *_, retry in busy)
        wait_for(lambda: ready(http), "ready again")
        assert http.get("/search", params={"q": QUESTION}).status_code == 200
