"""``python -m app.mcp``: the MCP tools over stdio, with the services the settings describe.

Configured like the service (``PAPERQA_*`` variables and ``.env``: ``PAPERQA_CHROMA_PATH``,
``PAPERQA_COLLECTION``, ``PAPERQA_LLM_BACKEND`` ...). Meant to be started by an MCP client; see
README.md, "Use it from an MCP client". Logs go to stderr; stdout carries the protocol only.
"""

from __future__ import annotations

import sys

from app.core import offline
from app.core.errors import run_cli


def serve() -> int:
    import asyncio
    import logging

    from app.core.settings import load_settings
    from app.mcp.stdio import serve_stdio

    settings = load_settings()  # InvalidSettings: one "error:" line on stderr (run_cli)
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not settings.debug:  # as app.http.logs: these log whole prompts at DEBUG
        for name in ("openai", "httpcore", "httpx", "llama_index"):
            logging.getLogger(name).setLevel(logging.INFO)
    asyncio.run(serve_stdio(settings))
    return 0


def main() -> int:
    offline.configure()  # before chromadb, transformers and tiktoken are imported
    return run_cli(serve)


if __name__ == "__main__":
    sys.exit(main())
