"""What one evaluation run varies: a :class:`Config`, written and parsed as a short spec string.

Spec: tokens joined by ``:`` (any order; unspecified fields keep the application defaults)::

    hybrid | dense | bm25          retrieval mode
    c200  o32                      chunk size / chunk overlap (wordpieces)
    k5                             top_k: papers given to the answerer
    local | extractive | openai    answer backend
    f0.3                           relevance floor
    cond-off | cond-concat | cond-llm   follow-up condensing
    torch | onnx-int8              embedding path (fp32 sentence-transformers, or int8 ONNX)
    s-extract | s-compose | s-generate   answer strategy (default: the backend's, ``auto``)
    aw0.5                          weight of a follow-up joined to the answer before it (0 = off)
    retrieval-only                 skip the answer part
    default                        the application defaults (the same as no token at all)

``hybrid:c128:k8:extractive`` is a valid ``--configs`` value; a config's :attr:`Config.name` is
its canonical spec, so every name in a report can be passed back to reproduce that row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from app.core.errors import PaperQAError
from app.core.settings import EMBED_WINDOW, RetrievalMode, Settings

AnswerBackend = Literal["local", "extractive", "openai"]
CondenseMode = Literal["llm", "concat", "off"]
MODES: tuple[str, ...] = ("bm25", "dense", "hybrid")
BACKENDS: tuple[str, ...] = ("local", "extractive", "openai")
CONDENSE: tuple[str, ...] = ("off", "concat", "llm")
STRATEGIES: tuple[str, ...] = ("extract", "compose", "generate")
EMBED_BACKENDS: tuple[str, ...] = ("onnx-int8", "torch")


class ConfigError(PaperQAError, ValueError):
    """A config spec that cannot be parsed or is out of range."""


@dataclass(frozen=True)
class Config:
    retrieval_mode: RetrievalMode
    top_k: int
    chunk_size: int
    chunk_overlap: int
    llm_backend: AnswerBackend
    relevance_floor: float
    condense_mode: CondenseMode
    answers: bool = True
    embed_backend: str = "onnx-int8"
    answer_strategy: str = "auto"
    answer_weight: float = 0.5  # PAPERQA_FOLLOWUP_ANSWER_WEIGHT
    label: str = ""  # optional display name; ``name`` stays the canonical spec

    @property
    def name(self) -> str:
        base = default_config()
        parts = [self.retrieval_mode, f"c{self.chunk_size}"]
        if self.answers:
            parts += [f"k{self.top_k}", self.llm_backend]
        elif self.condense_mode == "llm":  # the backend rewrites follow-ups; top_k plays no part
            parts.append(self.llm_backend)
        if self.chunk_overlap != base.chunk_overlap:
            parts.append(f"o{self.chunk_overlap}")
        if abs(self.relevance_floor - base.relevance_floor) > 1e-9:
            parts.append(f"f{self.relevance_floor:g}")
        if self.condense_mode != base.condense_mode:
            parts.append(f"cond-{self.condense_mode}")
        if self.embed_backend != base.embed_backend:
            parts.append(self.embed_backend)
        if self.answers and self.answer_strategy != base.answer_strategy:
            parts.append(f"s-{self.answer_strategy}")
        if abs(self.answer_weight - base.answer_weight) > 1e-9:
            parts.append(f"aw{self.answer_weight:g}")
        if not self.answers:
            parts.append("retrieval-only")
        return ":".join(parts)

    @property
    def collection(self) -> str:
        """The evaluation index for this chunking, in the configured Chroma path."""
        suffix = "" if self.embed_backend == "onnx-int8" else "_" + self.embed_backend.replace("-", "")
        return f"eval_c{self.chunk_size}_o{self.chunk_overlap}{suffix}"

    def settings(self, base: Settings) -> Settings:
        """``base`` (paths, model locations, threads) with this configuration's fields."""
        return base.model_copy(
            update={
                "collection": self.collection,
                "chunk_size": self.chunk_size,
                "chunk_overlap": self.chunk_overlap,
                "retrieval_mode": self.retrieval_mode,
                "top_k": self.top_k,
                "relevance_floor": self.relevance_floor,
                "condense_mode": self.condense_mode,
                "llm_backend": self.llm_backend,
                "embed_backend": self.embed_backend,
                "answer_strategy": self.answer_strategy,
                "followup_answer_weight": self.answer_weight,
            }
        )

    def with_(self, **changes: object) -> Config:
        return validate(replace(self, **changes))  # type: ignore[arg-type]


def _field_default(name: str) -> object:
    return Settings.model_fields[name].default


def _bounds(name: str, low: int, high: int) -> tuple[int, int]:
    """The ``ge`` / ``le`` bounds the settings declare for a field (the defaults if none)."""
    for item in Settings.model_fields[name].metadata:
        low = int(getattr(item, "ge", low) if getattr(item, "ge", None) is not None else low)
        high = int(getattr(item, "le", high) if getattr(item, "le", None) is not None else high)
    return low, high


def default_config() -> Config:
    """The defaults written in ``app/settings.py`` (not the environment): what ships."""
    backend = _field_default("llm_backend")
    # ``auto`` resolves to the bundled local model when no OpenAI endpoint is configured.
    return Config(
        retrieval_mode=_field_default("retrieval_mode"),  # type: ignore[arg-type]
        top_k=int(_field_default("top_k")),  # type: ignore[arg-type]
        chunk_size=int(_field_default("chunk_size")),  # type: ignore[arg-type]
        chunk_overlap=int(_field_default("chunk_overlap")),  # type: ignore[arg-type]
        llm_backend="local" if backend == "auto" else backend,  # type: ignore[arg-type]
        relevance_floor=float(_field_default("relevance_floor")),  # type: ignore[arg-type]
        condense_mode=_field_default("condense_mode"),  # type: ignore[arg-type]
        embed_backend=str(_field_default("embed_backend")),
        answer_strategy=str(_field_default("answer_strategy")),
        answer_weight=float(_field_default("followup_answer_weight")),  # type: ignore[arg-type]
    )


def validate(config: Config) -> Config:
    if config.retrieval_mode not in MODES:
        raise ConfigError(f"retrieval mode {config.retrieval_mode!r}: expected one of {MODES}")
    if config.llm_backend not in BACKENDS:
        raise ConfigError(f"backend {config.llm_backend!r}: expected one of {BACKENDS}")
    if config.embed_backend not in EMBED_BACKENDS:
        raise ConfigError(f"embedding backend {config.embed_backend!r}: expected one of {EMBED_BACKENDS}")
    if config.condense_mode not in CONDENSE:
        raise ConfigError(f"condense mode {config.condense_mode!r}: expected one of {CONDENSE}")
    low, high = _bounds("chunk_size", 1, EMBED_WINDOW - 2)
    if not low <= config.chunk_size <= high:
        raise ConfigError(f"chunk size {config.chunk_size}: expected {low}..{high}")
    if not 0 <= config.chunk_overlap < config.chunk_size:
        raise ConfigError(f"chunk overlap {config.chunk_overlap}: expected 0..chunk size - 1")
    if config.answer_strategy not in ("auto", *STRATEGIES):
        raise ConfigError(f"answer strategy {config.answer_strategy!r}: expected one of {STRATEGIES}")
    if not 0 <= config.answer_weight <= 2:
        raise ConfigError(f"answer weight {config.answer_weight:g}: expected 0..2")
    if not 1 <= config.top_k <= 50:
        raise ConfigError(f"top_k {config.top_k}: expected 1..50")
    return config


def parse_config(spec: str) -> Config:
    """``"bm25:c128:k3:extractive"`` -> :class:`Config` (see the module docstring)."""
    config = default_config()
    changes: dict[str, object] = {}
    for raw in spec.replace("/", ":").replace(",", ":").split(":"):
        token = raw.strip().lower()
        if not token or token == "default":
            continue
        try:
            if token in MODES:
                changes["retrieval_mode"] = token
            elif token in EMBED_BACKENDS:
                changes["embed_backend"] = token
            elif token in BACKENDS:
                changes["llm_backend"] = token
            elif token.startswith("cond-") and token[5:] in CONDENSE:
                changes["condense_mode"] = token[5:]
            elif token.startswith("s-") and token[2:] in STRATEGIES:
                changes["answer_strategy"] = token[2:]
            elif token.startswith("aw"):
                changes["answer_weight"] = float(token[2:])
            elif token == "retrieval-only":
                changes["answers"] = False
            elif token[0] == "c" and token[1:].isdigit():
                changes["chunk_size"] = int(token[1:])
            elif token[0] == "o" and token[1:].isdigit():
                changes["chunk_overlap"] = int(token[1:])
            elif token[0] == "k" and token[1:].isdigit():
                changes["top_k"] = int(token[1:])
            elif token[0] == "f":
                changes["relevance_floor"] = float(token[1:])
            else:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"config {spec!r}: cannot read {raw!r} (expected e.g. hybrid, c200, o32, k5, "
                "local|extractive|openai, f0.3, cond-off|cond-concat|cond-llm, torch|onnx-int8, "
                "s-extract|s-compose|s-generate, aw0.5, retrieval-only)"
            ) from None
    return config.with_(**changes)
