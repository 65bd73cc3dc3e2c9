"""paperqa-lite: question answering over research-paper abstracts (the read side)."""

from app import offline as _offline

_offline.configure()
