"""The service as a Model Context Protocol server: tools ``search_papers``, ``ask`` and ``get_paper``.

- :mod:`app.mcp.server`: the tools (official ``mcp`` SDK, ``MCPServer``), over a provider of the
  services; :mod:`app.mcp.tools` does their work, :mod:`app.mcp.results` shapes their results.
- :mod:`app.mcp.http`: the streamable HTTP endpoint the FastAPI app serves at ``/mcp``.
- ``python -m app.mcp`` (:mod:`app.mcp.__main__`): the same tools over stdio, for MCP clients
  that start the server themselves.

Layering: app.mcp sits between app.http (which only mounts it) and app.services.
"""
