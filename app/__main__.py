"""``python -m app``: serve the API and the chat page on ``PAPERQA_HOST:PAPERQA_PORT``."""

from __future__ import annotations

import sys

from app.core import offline
from app.core.errors import run_cli
from app.core.settings import load_settings


def serve() -> int:
    import uvicorn

    from app.http.app import create_app
    from app.http.logs import configure_logging

    settings = load_settings()
    configure_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        # The client address is the connection's; X-Forwarded-For is read by the app, and only
        # from PAPERQA_TRUSTED_PROXIES (uvicorn would otherwise trust it from 127.0.0.1).
        proxy_headers=False,  # app.http.middleware.request_log logs each request, with its id and route
        # An SSE stream is cut at shutdown after this long rather than holding the process.
        timeout_graceful_shutdown=5,
    )
    return 0


def main() -> int:
    offline.configure()
    return run_cli(serve)


if __name__ == "__main__":
    sys.exit(main())
