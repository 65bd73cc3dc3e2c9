"""``python -m app``: serve the API and the chat page on ``PAPERQA_HOST:PAPERQA_PORT``."""

from __future__ import annotations

import uvicorn

from app.logs import configure_logging
from app.main import create_app
from app.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,  # app.access logs each request, with its id and route
        # An SSE stream is cut at shutdown after this long rather than holding the process.
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
