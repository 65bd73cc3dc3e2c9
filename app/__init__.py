"""paperqa-lite: question answering over research-paper abstracts.

Layers, each depending only on those before it: ``app.core`` (settings, offline set-up, store,
embeddings, records, chunk format, errors), ``app.retrieval``, ``app.answering``, ``app.services``
(builds them), ``app.mcp`` (the tools over the Model Context Protocol), ``app.http`` (which also
mounts ``/mcp``). ``app.client`` is for the service's clients (eval, bench, your scripts).
``ingest`` writes the store through ``app.core`` alone.
"""
