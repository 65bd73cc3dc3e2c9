"""The one settings object. Built once (``Settings()``) and passed in; never read from a global.

Every field is documented in ``.env.example``; ``tests/test_settings.py`` checks that the two agree.
Environment variables use the ``PAPERQA_`` prefix, except the OpenAI ones, which also accept the
names the ``openai`` client itself uses (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # app/core/settings.py -> the project

RetrievalMode = Literal["dense", "bm25", "hybrid"]
LLMBackend = Literal["auto", "local", "openai", "extractive"]

# MiniLM's window, in wordpieces, including [CLS] and [SEP].
EMBED_WINDOW = 256


# The most papers one question may retrieve: the bound of top_k here, of /search's k, of the
# requests' top_k and of the MCP tool's k.
TOP_K_MAX = 50


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PAPERQA_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- corpus and store -------------------------------------------------------------------
    corpus_paths: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [PROJECT_ROOT / "data" / "corpus"]
    )
    chroma_path: Path = PROJECT_ROOT / "var" / "chroma"
    chroma_host: str = ""
    chroma_port: int = 8000
    chroma_ssl: bool = False
    collection: str = "papers"
    store_timeout_s: float = Field(10.0, gt=0)
    store_retry_s: float = Field(5.0, gt=0)
    store_max_concurrency: int = Field(8, ge=1, le=256)
    store_queue_wait_s: float = Field(0.5, ge=0)
    hnsw_ef_search: int = Field(300, ge=10, le=5000)
    # The BM25 index ingestion builds; default: beside the embedded store (<chroma_path>-bm25).
    lexical_path: Path | None = None

    # --- embeddings and chunking -----------------------------------------------------------
    embed_model_path: str = ""
    embed_backend: Literal["torch", "onnx-int8"] = "onnx-int8"
    embed_batch_size: int = Field(4, ge=1)
    model_cache_dir: Path = PROJECT_ROOT / "var" / "models"
    chunk_size: int = Field(200, ge=64, le=EMBED_WINDOW - 2)
    chunk_overlap: int = Field(32, ge=0)
    # Ingestion bounds (ingest/parsers.py): a record over one is reported with file:line and skipped.
    ingest_max_title_chars: int = Field(1000, ge=1)
    ingest_max_abstract_chars: int = Field(100_000, ge=1)
    ingest_max_line_bytes: int = Field(1024 * 1024, ge=1024)
    ingest_max_array_bytes: int = Field(64 * 1024 * 1024, ge=1024)

    # --- retrieval -------------------------------------------------------------------------
    retrieval_mode: RetrievalMode = "hybrid"
    top_k: int = Field(5, ge=1, le=TOP_K_MAX)
    top_k_many: int = Field(5, ge=1, le=TOP_K_MAX)  # for a question asking for several papers
    candidate_k: int = Field(30, ge=1, le=500)
    rrf_k: int = Field(60, ge=1)
    relevance_floor: float = 0.397
    coverage_model: Literal["logistic", "rules"] = "logistic"
    # Fitted on the tuning questions by `python -m eval calibrate --set dev+dev-coverage`
    # (docs/evaluation.md, "Coverage").
    coverage_weight_dense: float = 6.256
    coverage_weight_share: float = 4.296
    coverage_weight_bm25: float = 4.113
    coverage_weight_absent: float = -3.916
    coverage_weight_dense_gap: float = 23.887
    coverage_bias: float = -5.95
    coverage_min_probability: float = Field(0.525, ge=0.0, le=1.0)
    coverage_max_absent: float = Field(1.0, ge=0.0, le=1.0)
    coverage_min_share: float = Field(1.01, ge=0.0, le=1.01)
    coverage_min_bm25: float = Field(1.01, ge=0.0, le=1.01)
    coverage_names: bool = True
    name_question_max_terms: int = Field(2, ge=0, le=20)
    suggestions: int = Field(3, ge=0, le=20)
    condense_mode: Literal["llm", "concat", "off"] = "concat"
    followup_raw_weight: float = Field(0.5, ge=0.0, le=1.0)
    followup_full_weight_terms: int = Field(4, ge=0, le=50)
    followup_answer_weight: float = Field(0.5, ge=0.0, le=2.0)
    index_refresh_s: float = Field(30.0, ge=0)

    # --- answering -------------------------------------------------------------------------
    llm_backend: LLMBackend = "auto"
    openai_api_key: str = Field("", validation_alias=AliasChoices("PAPERQA_OPENAI_API_KEY", "OPENAI_API_KEY"))
    openai_base_url: str = Field(
        "", validation_alias=AliasChoices("PAPERQA_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    llm_model: str = "gpt-4o-mini"
    local_model_path: str = ""
    llm_threads: int = Field(2, ge=1)
    llm_context_window: int = Field(2048, ge=512)
    max_answer_tokens: int = Field(200, ge=16)
    temperature: float = Field(0.1, ge=0.0, le=2.0)
    context_token_budget: int = Field(700, ge=100)
    passages_per_paper: int = Field(1, ge=1, le=5)
    # --- evidence and answer strategies (app/answering/evidence.py, compose.py, claims.py) -----
    answer_strategy: Literal["auto", "compose", "generate", "extract"] = "auto"
    # Chosen on the tuning sets (the sweep: python -m eval evidence --set dev+dev-coverage+dev-answers;
    # docs/evaluation.md, "Evidence settings").
    evidence_weight_dense: float = 1.0
    evidence_weight_lexical: float = 0.5
    evidence_weight_number: float = 0.2
    evidence_weight_name: float = 0.2
    evidence_sentences: int = Field(3, ge=1, le=5)
    evidence_second_ratio: float = Field(0.6, ge=0.0, le=1.0)
    answer_paper_ratio: float = Field(0.7, ge=0.0, le=1.0)
    answer_paper_ratio_default: float = Field(1.0, ge=0.0, le=1.0)
    followup_focus_ratio: float = Field(0.5, ge=0.0, le=1.0)
    claim_min_similarity: float = Field(0.75, ge=-1.0, le=1.0)  # calibrated on dev: python -m eval claims
    llm_timeout_s: float = Field(60.0, gt=0)
    llm_retries: int = Field(2, ge=0, le=10)
    llm_max_concurrency: int = Field(1, ge=1)
    llm_queue_size: int = Field(4, ge=0)
    llm_queue_wait_share: float = Field(0.25, gt=0, lt=1)
    prompts_dir: Path = PROJECT_ROOT / "prompts"

    # --- HTTP service ----------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str = ""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_messages: int = Field(20, ge=1)
    max_message_chars: int = Field(4000, ge=1)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    body_timeout_s: float = Field(10.0, gt=0)
    rate_limit_per_minute: int = Field(120, ge=0)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"
    debug: bool = False

    @field_validator("corpus_paths", "cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        """Accept ``a,b`` in env vars as well as JSON lists."""
        if isinstance(value, str) and not value.strip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        """Each entry an IP address or a CIDR network (``10.0.0.0/8``), checked at start."""
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (e.g. 10.0.0.1, 10.0.0.0/8)"
                ) from None
        return value

    @field_validator("lexical_path", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("lexical_path", mode="after")
    @classmethod
    def _anchor_optional(cls, value: Path | None) -> Path | None:
        return None if value is None else (value if value.is_absolute() else PROJECT_ROOT / value)

    @property
    def lexical_dir(self) -> Path:
        """Where the BM25 index lives (``PAPERQA_LEXICAL_PATH``, else beside the embedded store)."""
        return self.lexical_path or self.chroma_path.with_name(self.chroma_path.name + "-bm25")

    @field_validator("chroma_path", "prompts_dir", "model_cache_dir", mode="after")
    @classmethod
    def _anchor(cls, value: Path) -> Path:
        """Relative paths are relative to the project, not to wherever the command runs."""
        return value if value.is_absolute() else PROJECT_ROOT / value

    @field_validator("corpus_paths", mode="after")
    @classmethod
    def _anchor_all(cls, value: list[Path]) -> list[Path]:
        return [p if p.is_absolute() else PROJECT_ROOT / p for p in value]

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"PAPERQA_CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than "
                f"PAPERQA_CHUNK_SIZE ({self.chunk_size})"
            )
        return self

    @property
    def resolved_llm_backend(self) -> Literal["local", "openai", "extractive"]:
        """``auto`` means: an OpenAI-compatible endpoint when one is configured, else the bundled model."""
        if self.llm_backend != "auto":
            return self.llm_backend
        return "openai" if (self.openai_base_url or self.openai_api_key) else "local"

    @property
    def llm_queue_wait_s(self) -> float:
        """How long a request may wait for the model's turn (a share of its answer deadline)."""
        return self.llm_timeout_s * self.llm_queue_wait_share

    @property
    def uses_chroma_server(self) -> bool:
        return bool(self.chroma_host)


def load_settings(**overrides: object) -> Settings:
    """``Settings()`` from the environment and ``.env``; a bad value is one readable error."""
    from app.core.errors import InvalidSettings

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidSettings(
            f"invalid settings (PAPERQA_* variables or .env): {problems}; see .env.example"
        ) from None
