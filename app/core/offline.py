"""Keep every library off the network: this service runs where nothing can be downloaded.

Call :func:`configure` before importing chromadb, tiktoken, transformers or sentence-transformers.
It only sets variables that are not already set, so an operator can still override them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def tiktoken_cache_dir() -> Path | None:
    """The tiktoken encodings that llama-index-core ships, so tiktoken never downloads them."""
    spec = importlib.util.find_spec("llama_index.core")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "_static" / "tiktoken_cache"
    return path if path.is_dir() else None


def configure() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Chroma: no product telemetry.
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    cache = tiktoken_cache_dir()
    if cache is not None:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
