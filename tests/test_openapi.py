"""The OpenAPI document tells the truth (issue 15, part 1): schemathesis, with ALL its checks, run
as its own command against a live server (uvicorn on 127.0.0.1 over the fast-tier store, extractive
answers): valid requests by the schema are accepted, invalid ones refused, every answer's status,
content type, headers and body are the ones the schema declares, on every operation.

The server runs with the rate limit lifted (else the run would mostly measure 429s, which the
schema declares) and a body limit above the largest body the schema allows (20 messages of 4,000
characters, each character up to 12 bytes as JSON escapes); both limits are declared in the
schema (429, 413). Main had 3 failures: ``{"stream": 0}`` accepted, an empty last message refused
on both chat routes although the schema allowed it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.http.app import create_app
from app.services import Services
from tests.helpers import LiveServer

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
OPERATIONS = (
    "POST /chat",
    "POST /v1/chat/completions",
    "GET /search",
    "GET /papers/{paper_id}",
    "GET /health",
)


def run_schemathesis(url: str, *extra: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The schemathesis command (it writes a cache folder where it runs: give it ``cwd``)."""
    command = [
        str(SCHEMATHESIS if SCHEMATHESIS.exists() else shutil.which("schemathesis")),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "25",
        "--seed",
        "20261205",
        "--generation-deterministic",
        "--workers",
        "1",
        "--no-color",
        "--request-timeout",
        "60",
        *extra,
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, check=False, cwd=cwd)


def serve(services: Services, **overrides: object) -> LiveServer:
    settings = services.settings.model_copy(
        update={"rate_limit_per_minute": 0, "max_body_bytes": 1_200_000, **overrides}
    )
    return LiveServer(create_app(settings, services))


def test_schemathesis_all_checks_pass_on_every_operation(contract_services: Services, tmp_path: Path) -> None:
    with serve(contract_services) as server:
        done = run_schemathesis(server.url, cwd=tmp_path)
    report = done.stdout + done.stderr
    (tmp_path / "schemathesis.txt").write_text(report)
    print(f"schemathesis report: {tmp_path / 'schemathesis.txt'}")
    assert done.returncode == 0, report[-6000:]
    assert "No issues found" in report and f"Tested: {len(OPERATIONS) + 1}" in report, report[-3000:]


def test_with_an_api_key_the_schema_says_so_and_schemathesis_agrees(
    contract_services: Services, tmp_path: Path
) -> None:
    """With ``PAPERQA_API_KEY`` the document declares the bearer scheme (and 401); schemathesis's
    auth checks (``ignored_auth``) then verify that the key is really required."""
    with serve(contract_services, api_key="s3cret") as server:
        spec = httpx.get(f"{server.url}/openapi.json", headers={"Authorization": "Bearer s3cret"}).json()
        assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert spec["paths"]["/chat"]["post"]["security"] == [{"bearer": []}]
        assert "security" not in spec["paths"]["/health"]["get"]
        done = run_schemathesis(server.url, "--header", "Authorization: Bearer s3cret", cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "No issues found" in done.stdout, done.stdout[-3000:]


def test_the_schema_carries_the_service_s_limits_and_the_stream(contract_services: Services) -> None:
    with serve(contract_services, max_messages=7, max_message_chars=300) as server:
        spec = httpx.get(f"{server.url}/openapi.json").json()
    messages = spec["components"]["schemas"]["ChatRequest"]["properties"]["messages"]
    assert messages["maxItems"] == 7 and messages["contains"]["properties"]["role"]["const"] == "user"
    user = messages["items"]["anyOf"][0]["properties"]["content"]
    assert user["maxLength"] == 300 and user["pattern"]
    q = next(p for p in spec["paths"]["/search"]["get"]["parameters"] if p["name"] == "q")
    assert q["schema"]["maxLength"] == 300
    stream = spec["paths"]["/chat"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    events = {e["properties"]["event"]["const"]: e["properties"]["data"] for e in stream["schema"]["oneOf"]}
    assert set(events) == {"sources", "delta", "error", "done"}
    assert events["done"]["contentSchema"] == {"$ref": "#/components/schemas/AnswerResult"}
    for name in ("AnswerResult", "Source", "StreamDelta", "StreamError"):
        assert name in spec["components"]["schemas"], name
    assert spec["components"]["schemas"]["ChatRequest"]["properties"]["stream"]["type"] == "boolean"
    assert "429" not in spec["paths"]["/chat"]["post"]["responses"]  # no limit set, none declared


@pytest.mark.parametrize(
    "pattern_case", ["", " ", "\u00a0\u3000", "\ufeff", "\x00\x07", "x", "\ud800", " é "]
)
def test_the_schema_s_non_blank_rule_is_the_service_s(pattern_case: str) -> None:
    """The same regex decides in both places (written with \\u escapes, read alike by Python and ECMA)."""
    import re

    from app.core.text import NON_BLANK, clean_text, is_blank

    schema_says_ok = re.search(NON_BLANK, pattern_case) is not None
    assert schema_says_ok == (not is_blank(clean_text(pattern_case)))
