"""``python -m app``: serve the API and the chat page on ``PAPERQA_HOST:PAPERQA_PORT``."""

from __future__ import annotations

import logging

import uvicorn

from app.main import create_app
from app.settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # An SSE stream is cut at shutdown after this long rather than holding the process.
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
