"""Every failure as one readable message with the right status; never a traceback to a client.

One function, :func:`describe`, decides what a failure means for a client (status, message, the
OpenAI error type, ``Retry-After``); the JSON error (:func:`error_response`), the SSE ``error``
event (:func:`sse_error`) and the OpenAI stream error (:func:`openai_error`) are three renderings
of it. Under ``/v1/`` a JSON error also carries the OpenAI shape
``{"error": {"message", "type", "code"}}`` so OpenAI clients show the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.answering.types import AnswerResult
from app.core.errors import PaperQAError, StoreUnavailable

log = logging.getLogger(__name__)

UNEXPECTED = "the request failed on the server; please retry (the server log has the details)"


@dataclass(frozen=True)
class Failure:
    status: int
    message: str
    kind: str  # the OpenAI error type
    retry_after_s: int | None = None

    @property
    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s else None


def describe(exc: BaseException) -> Failure:
    """What a failure means for a client. Unexpected exceptions are logged with their traceback."""
    if isinstance(exc, PaperQAError):
        message = str(exc)
        if isinstance(exc, StoreUnavailable):
            log.error("store unavailable: %s", exc)
            message = f"the paper store is unavailable: {exc}"
        return Failure(exc.status, message, exc.kind, exc.retry_after_s)
    log.error("unexpected failure", exc_info=exc)
    return Failure(500, UNEXPECTED, "server_error")


def error_body(
    request_path: str, status: int, detail: Any, kind: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail, **extra}
    if request_path.startswith("/v1/"):
        body["error"] = {
            "message": detail if isinstance(detail, str) else str(detail),
            "type": kind or ("invalid_request_error" if status < 500 else "server_error"),
            "param": None,
            "code": status,
        }
    return body


def error_response(
    request: Request, status: int, detail: Any, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        error_body(request.url.path, status, detail, **extra), status_code=status, headers=headers
    )


def failure_response(request: Request, exc: BaseException, **extra: Any) -> JSONResponse:
    failure = describe(exc)
    body = error_body(request.url.path, failure.status, failure.message, failure.kind, **extra)
    return JSONResponse(body, status_code=failure.status, headers=failure.headers)


def sse_error(exc: BaseException) -> dict[str, str]:
    """The data of ``/chat``'s SSE ``error`` event."""
    return {"message": describe(exc).message}


def openai_error(exc: BaseException) -> dict[str, Any]:
    """An error object in an OpenAI-compatible stream."""
    failure = describe(exc)
    return {"error": {"message": failure.message, "type": failure.kind, "code": failure.status}}


# --- validation ------------------------------------------------------------------------------------
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


# --- an LLM that failed -------------------------------------------------------------------------
def llm_failed(request: Request, result: AnswerResult, fallback: dict[str, Any]) -> JSONResponse:
    """503 for a configured LLM that failed; ``fallback`` carries the extractive answer instead."""
    reason = result.fallback_reason or "unknown failure"
    log.warning("LLM failed, answered extractively: %s", reason)
    return error_response(
        request,
        503,
        f"The language model failed ({reason}). An extractive answer with citations is in "
        "`fallback`; retry later for a written answer.",
        headers={"Retry-After": "5"},
        fallback=fallback,
    )


def llm_fell_back(result: AnswerResult) -> bool:
    """The configured LLM failed and the answer is the extractive fallback (a 503 for JSON)."""
    return result.fallback_reason is not None


# --- handlers ------------------------------------------------------------------------------------
async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    # The offending input is not echoed back: it can be large, and it is the caller's own.
    brief = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
    return error_response(request, 422, describe_validation(errors), errors=brief)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(request, exc.status_code, exc.detail, headers=getattr(exc, "headers", None))


async def _known(request: Request, exc: Exception) -> JSONResponse:
    return failure_response(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, 500, "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(PaperQAError, _known)
    app.add_exception_handler(Exception, _unexpected)
