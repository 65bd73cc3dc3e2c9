"""all-MiniLM-L6-v2 on ONNX Runtime with int8 dynamic quantization, exported here from the bundled
weights (nothing is downloaded), behind LlamaIndex's ``BaseEmbedding`` interface.

Why: the MiniLM forward pass is nearly all of ingestion time on a small CPU. The int8 model is
~4x smaller, and batches are sorted by length so little compute goes to padding. The export is
done once and cached in ``PAPERQA_MODEL_CACHE_DIR``, keyed by the weights' hash.
Pooling and normalisation are those of the sentence-transformers model: mean over real tokens,
then L2. ``bench/ingest.py`` measures the speed-up and the agreement with the torch model.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from app.core.settings import EMBED_WINDOW

log = logging.getLogger(__name__)
ONNX_OPSET = 17


def _weights_key(model_dir: Path) -> str:
    digest = hashlib.sha1()
    for name in ("model.safetensors", "config.json"):
        path = model_dir / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def export_int8(model_dir: Path, out_dir: Path, attention: str = "eager") -> Path:
    """Export the transformer to ONNX (TorchScript exporter) and quantize weights to int8.

    ``attention="eager"`` traces transformers' plain attention code rather than its default
    ("sdpa"); ``python -m bench.embedder`` compares the two graphs (as fast or faster at every
    batch size measured, within this machine's noise at batch 4).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"minilm-{_weights_key(model_dir)}-int8pc-{attention}.onnx"
    if target.exists():
        return target
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    class Encoder(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    log.info("exporting %s to ONNX int8 (once)", model_dir)
    encoder = Encoder(AutoModel.from_pretrained(str(model_dir), attn_implementation=attention).eval())
    dummy = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    fp32 = out_dir / f"minilm-{_weights_key(model_dir)}-{attention}-fp32.onnx.tmp"
    with torch.no_grad():
        torch.onnx.export(
            encoder,
            (dummy, dummy, torch.zeros_like(dummy)),
            str(fp32),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "last_hidden_state": axes,
            },
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    partial = target.with_suffix(".tmp")
    quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8, per_channel=True)
    os.replace(partial, target)  # atomic: a killed export never leaves a broken model
    fp32.unlink(missing_ok=True)
    return target


class OnnxMiniLM(BaseEmbedding):
    """Mean-pooled, L2-normalised sentence embeddings from an ONNX MiniLM."""

    max_length: int = EMBED_WINDOW
    # LlamaIndex hands us up to embed_batch_size texts at once (set large); we sort them by length
    # and run the model onnx_batch_size at a time.
    onnx_batch_size: int = 4
    _session: Any = PrivateAttr()
    _tokenizer: Any = PrivateAttr()

    def __init__(self, model_dir: str, onnx_path: str, threads: int = 0, **kwargs: Any) -> None:
        super().__init__(model_name=f"{Path(model_dir).name} (onnx-int8)", **kwargs)
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No memory arena: it would keep the largest batch's buffers for the life of the process.
        options.enable_cpu_mem_arena = False
        self._session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        tokenizer.enable_truncation(self.max_length)
        tokenizer.no_padding()
        self._tokenizer = tokenizer

    @classmethod
    def class_name(cls) -> str:
        return "OnnxMiniLM"

    def _encode(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(texts)
        # Longest first, so each batch is padded only to lengths close to its own.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids), reverse=True)
        out: list[list[float] | None] = [None] * len(texts)
        size = max(1, self.onnx_batch_size)
        for start in range(0, len(order), size):
            batch = [encodings[i] for i in order[start : start + size]]
            width = max(len(e.ids) for e in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, encoding in enumerate(batch):
                ids[row, : len(encoding.ids)] = encoding.ids
                mask[row, : len(encoding.ids)] = 1
            (hidden,) = self._session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            for row, index in enumerate(order[start : start + size]):
                out[index] = pooled[row].tolist()
        return [vector for vector in out if vector is not None]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encode([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encode([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)
