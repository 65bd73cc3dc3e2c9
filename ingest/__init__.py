"""Ingestion: parse corpora, dedupe, chunk, embed and write the Chroma store (the write side).

Depends on ``app.core`` only (settings, store, embeddings, records, chunk format).
"""
