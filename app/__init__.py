"""paperqa-lite: question answering over research-paper abstracts.

Layers, each depending only on those before it: ``app.core`` (settings, offline set-up, store,
embeddings, records, chunk format, errors), ``app.retrieval``, ``app.answering``, ``app.services``
(builds them), ``app.http``. ``ingest`` writes the store through ``app.core`` alone.
"""
