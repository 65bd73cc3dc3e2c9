"""Fuzz the HTTP API from its own OpenAPI schema (schemathesis), in process over the real index
with extractive answers: whatever the generated request, valid or not, never a 5xx and never a hang.

Bounded: ``MAX_EXAMPLES`` generated requests per operation and generation mode (valid, invalid),
no Hypothesis deadline, each request timed; the whole run takes a couple of minutes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from app.http.app import create_app
from app.services import Services

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 30
PER_REQUEST_S = 30.0


@pytest.fixture(scope="module")
def api_schema(extractive_services: Services):
    app_settings = extractive_services.settings.model_copy(update={"rate_limit_per_minute": 0})
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(app_settings, extractive_services))


def operations(schema) -> dict[str, object]:
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        found[f"{operation.method.upper()} {operation.path}"] = operation
    return found


def test_the_schema_lists_every_route(api_schema) -> None:
    assert set(operations(api_schema)) >= {
        "POST /chat",
        "POST /v1/chat/completions",
        "GET /v1/models",
        "GET /papers/{paper_id}",
        "GET /search",
        "GET /health",
    }


def fuzz_one(label: str, operation: Any, mode: GenerationMode, seen: dict[str, int]) -> None:
    """Run hypothesis over one operation; count the requests it made in ``seen``."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def one(case) -> None:
        started = time.monotonic()
        response = case.call_and_validate(checks=[not_a_server_error])
        seconds = time.monotonic() - started
        assert seconds < PER_REQUEST_S, f"{label} took {seconds:.1f} s"
        assert "Traceback" not in response.text
        seen[label] = seen.get(label, 0) + 1

    one()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_server_errors_and_no_hangs(api_schema, mode: GenerationMode) -> None:
    seen: dict[str, int] = {}
    for label, operation in operations(api_schema).items():
        try:
            fuzz_one(label, operation, mode, seen)
        except Unsatisfiable:  # nothing to make invalid (no body; no parameter, or any string goes)
            assert mode is GenerationMode.NEGATIVE and label.startswith("GET"), label
    fuzzed = {"POST /chat", "POST /v1/chat/completions", "GET /search"}
    if mode is GenerationMode.POSITIVE:
        fuzzed |= {"GET /papers/{paper_id}", "GET /health", "GET /v1/models"}
    assert fuzzed <= set(seen) and all(count >= 1 for count in seen.values()), seen
