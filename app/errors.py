"""Every failure as JSON ``{"detail": ...}`` with the right status; never a traceback to the client.

Under ``/v1/`` the body also carries the OpenAI shape ``{"error": {"message", "type", "code"}}`` so
OpenAI clients show the reason.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.answer import AnswerResult
from app.llm import LLMBusy
from app.store import StoreUnavailable

log = logging.getLogger(__name__)

RETRY_AFTER_S = "5"


def error_response(
    request: Request, status: int, detail: Any, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail, **extra}
    if request.url.path.startswith("/v1/"):
        body["error"] = {
            "message": detail if isinstance(detail, str) else str(detail),
            "type": "invalid_request_error" if status < 500 else "server_error",
            "param": None,
            "code": status,
        }
    return JSONResponse(body, status_code=status, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def describe_validation(errors: list[dict[str, Any]]) -> str:
    """One readable sentence per problem, e.g. ``messages[0].role: Input should be 'user', ...``."""
    sentences = []
    for error in errors:
        if error.get("type") == "json_invalid":
            sentences.append("the request body is not valid JSON")
            continue
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        sentences.append(f"{_location(tuple(error.get('loc', ())))}: {message}")
    return "; ".join(dict.fromkeys(sentences)) or "invalid request"


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    # The offending input is not echoed back: it can be large, and it is the caller's own.
    brief = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
    return error_response(request, 422, describe_validation(errors), errors=brief)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(request, exc.status_code, exc.detail, headers=getattr(exc, "headers", None))


def llm_failed(request: Request, result: AnswerResult, fallback: dict[str, Any]) -> JSONResponse:
    """503 for a configured LLM that failed; ``fallback`` carries the extractive answer instead."""
    reason = result.fallback_reason or "unknown failure"
    log.warning("LLM failed, answered extractively: %s", reason)
    return error_response(
        request,
        503,
        f"The language model failed ({reason}). An extractive answer with citations is in "
        "`fallback`; retry later for a written answer.",
        headers={"Retry-After": RETRY_AFTER_S},
        fallback=fallback,
    )


async def _busy(request: Request, exc: LLMBusy) -> JSONResponse:
    return error_response(request, 503, str(exc), headers={"Retry-After": RETRY_AFTER_S})


async def _store(request: Request, exc: StoreUnavailable) -> JSONResponse:
    log.error("store unavailable: %s", exc)
    return error_response(request, 503, f"the paper store is unavailable: {exc}")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, 500, "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(LLMBusy, _busy)
    app.add_exception_handler(StoreUnavailable, _store)
    app.add_exception_handler(Exception, _unexpected)
