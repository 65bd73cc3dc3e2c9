"""Logging for ``python -m app``: the usual lines, one JSON object per line for requests
(``app.requests``, see :mod:`app.http.middleware.request_log`), and prompts kept out of the log unless
``PAPERQA_DEBUG`` is on.
"""

from __future__ import annotations

import logging

from app.core.settings import Settings
from app.http.middleware.request_log import REQUEST_LOGGER

# Libraries that log whole requests, prompts included, at DEBUG level.
PROMPT_LOGGERS = ("openai", "httpcore", "httpx", "llama_index")


def keep_prompts_out(settings: Settings) -> None:
    """Hold the libraries that would log prompts at INFO, unless debugging is on."""
    level = logging.NOTSET if settings.debug else logging.INFO
    for name in PROMPT_LOGGERS:
        logging.getLogger(name).setLevel(level)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    requests = logging.getLogger(REQUEST_LOGGER)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    requests.addHandler(handler)
    requests.propagate = False
    keep_prompts_out(settings)
