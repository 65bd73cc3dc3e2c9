"""Ingestion: parse corpora, dedupe, chunk, embed and write the Chroma store (the write side)."""

from app import offline as _offline

_offline.configure()
