"""One error vocabulary for the whole project.

Every failure the user can do something about is a :class:`PaperQAError`. Each subclass carries
the HTTP status it maps to and whether a retry can help; its message is the sentence the user
sees (what went wrong and what to do). The HTTP layer turns any of them into a JSON error, an SSE
``error`` event or an OpenAI error with one function (``app.http.errors.describe``); the
command-line tools print ``error: <message>`` and exit with :attr:`PaperQAError.exit_code`
(:func:`run_cli`), never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class PaperQAError(Exception):
    """Base of every expected failure; ``str(error)`` is the message a user sees."""

    status: int = 500
    kind: str = "server_error"  # the OpenAI error ``type``
    retry_after_s: int | None = None
    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(PaperQAError):
    """The request is malformed or over a limit (HTTP 422)."""

    status = 422
    kind = "invalid_request_error"


class NotFound(PaperQAError):
    """No such paper (HTTP 404)."""

    status = 404
    kind = "invalid_request_error"


class StoreUnavailable(PaperQAError):
    """The Chroma store cannot be reached, has no index yet, or holds another layout (HTTP 503)."""

    status = 503
    retry_after_s: int | None = 5


class LayoutMismatch(StoreUnavailable):
    """The store was built with other settings (chunking, embedder) than the ones given."""

    retry_after_s = None


class EmbedderUnavailable(PaperQAError):
    """The embedding model cannot be loaded (not installed, wrong path)."""

    status = 503


class LLMError(PaperQAError):
    """The LLM failed (down, timed out, bad reply); answers fall back to extractive (HTTP 503)."""

    status = 503
    retry_after_s = 5


class LLMBusy(LLMError):
    """Too many generations running and waiting; try again shortly (HTTP 503)."""


class Busy(PaperQAError):
    """Too many requests wait on a slow part (the store); try again shortly (HTTP 503)."""

    status = 503
    retry_after_s = 2


class InvalidSettings(PaperQAError):
    """A ``PAPERQA_*`` variable or ``.env`` entry has a value the settings refuse."""


class PromptError(PaperQAError):
    """A prompt file is missing or has the wrong placeholders (a configuration error)."""


class IngestError(PaperQAError):
    """Ingestion cannot start (incompatible store, no input); the message says what to do."""


class UnreadableFile(PaperQAError):
    """A whole input file cannot be read (missing, binary, empty)."""


def run_cli(main: Callable[[], int]) -> int:
    """Run a command's ``main``: a :class:`PaperQAError` becomes one ``error:`` line and its exit
    code; Ctrl-C exits 130 quietly."""
    try:
        return main()
    except PaperQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
