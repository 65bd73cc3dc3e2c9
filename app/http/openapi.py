"""The OpenAPI document, told the truth: every rule the service enforces, with the limits of the
running service (its settings), and the event stream of ``POST /chat`` described.

FastAPI builds the document from the routes and models; what they cannot say is added here:
- the conversation rules and limits (:func:`app.http.schemas.request_schemas`: at most
  ``max_messages`` messages of at most ``max_message_chars``, every user message non-blank);
- ``GET /search``'s ``q``: non-blank, at most ``max_message_chars``;
- the answers every route may give before it runs: 413 and 408 (body too big or too slow), 429
  (rate limit, with ``Retry-After``), 401 (API key) and the bearer scheme when a key is set;
- the SSE events of ``/chat`` with ``stream: true`` (``x-sse-events``: name -> payload schema).
``tests/test_openapi.py`` runs schemathesis with all its checks against a live server.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.answering.types import AnswerResult, Source
from app.core.settings import Settings
from app.core.text import NON_BLANK
from app.http.middleware.api_key import is_public
from app.http.schemas import ErrorBody, StreamDelta, StreamError, request_schemas

REF = "#/components/schemas/{model}"
SSE_EVENTS: dict[str, tuple[str, type[BaseModel] | None]] = {
    "sources": ("the retrieved papers, first (a JSON list of `Source`)", Source),
    "delta": ("a piece of the answer's text", StreamDelta),
    "error": ("what went wrong; the stream then ends with `done` if an answer was salvaged", StreamError),
    "done": ("the whole checked answer with its citations, last", AnswerResult),
}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}},
    }
    if headers:
        response["headers"] = headers
    return response


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def _add_models(schema: dict[str, Any], *models: type[BaseModel]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        body = model.model_json_schema(ref_template=REF)
        for name, definition in body.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components.setdefault(model.__name__, body)


def _describe_stream(operation: dict[str, Any]) -> None:
    """Each server-sent event as an object (``event``, ``data``), ``data`` being JSON whose schema is
    given by ``contentSchema`` per event name."""

    def payload(name: str, model: type[BaseModel]) -> dict[str, Any]:
        ref = {"$ref": REF.format(model=model.__name__)}
        return {"type": "array", "items": ref} if name == "sources" else ref

    events = [
        {
            "type": "object",
            "properties": {
                "event": {"const": name},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": payload(name, model),
                    "description": text,
                },
            },
            "required": ["event", "data"],
        }
        for name, (text, model) in SSE_EVENTS.items()
        if model is not None
    ]
    stream = operation["responses"]["200"]["content"]["text/event-stream"]
    stream["schema"] = {
        "oneOf": events,
        "description": "Server-sent events, in this order: `sources`, `delta`..., `done`; an `error` "
        "event may come before `done`. Comment lines (`: ping`) keep the connection open.",
    }


def _search_query(operation: dict[str, Any], settings: Settings) -> None:
    for parameter in operation.get("parameters", []):
        if parameter["name"] == "q":
            parameter["schema"].update(maxLength=settings.max_message_chars, pattern=NON_BLANK)


def build_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        routes=app.routes,
        description=app.description,
    )
    _add_models(schema, ErrorBody, StreamDelta, StreamError, Source, AnswerResult)
    components = schema["components"]["schemas"]
    for name, messages in request_schemas(settings).items():
        components[name]["properties"]["messages"] = messages
    if settings.api_key:
        schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if method == "post":
                responses.setdefault("400", _error("the body is not JSON (or nests deeper than 64 levels)"))
                responses.setdefault("413", _error(f"the body is over {settings.max_body_bytes} bytes"))
                responses.setdefault("408", _error("the body was not sent within the body timeout"))
            if settings.rate_limit_per_minute > 0 and path != "/health":
                responses.setdefault(
                    "429", _error(f"over {settings.rate_limit_per_minute} requests a minute", RETRY_AFTER)
                )
            if settings.api_key and not is_public(method.upper(), path):
                operation["security"] = [{"bearer": []}]
                responses.setdefault("401", _error("the API key is missing or wrong"))
            if path == "/chat" and method == "post":
                _describe_stream(operation)
            if path == "/search":
                _search_query(operation, settings)
    return schema


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve :func:`build_openapi` at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
