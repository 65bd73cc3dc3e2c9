"""The settings object and .env.example agree, and the documented defaults are the real ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.settings import PROJECT_ROOT, Settings

ENV_EXAMPLE = PROJECT_ROOT / ".env.example"


def documented_names() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(line.split("=", 1)[0])
    return names


def env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is not None:
            names.add(alias.choices[-1])  # the openai client's own name
        else:
            names.add("PAPERQA_" + name.upper())
    return names


def test_every_setting_is_documented_and_nothing_else() -> None:
    assert documented_names() == env_names()


def test_documented_defaults_are_the_real_defaults() -> None:
    from_file = Settings(_env_file=ENV_EXAMPLE)
    assert from_file.model_dump() == Settings(_env_file=None).model_dump()


def test_env_vars_and_csv_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERQA_CORPUS_PATHS", "a.jsonl, /abs/b")
    monkeypatch.setenv("PAPERQA_CORS_ORIGINS", "http://a.test,http://b.test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    s = Settings(_env_file=None)
    assert s.corpus_paths == [PROJECT_ROOT / "a.jsonl", Path("/abs/b")]
    assert s.cors_origins == ["http://a.test", "http://b.test"]
    assert s.resolved_llm_backend == "openai"


def test_backend_auto_is_local_without_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert Settings(_env_file=None).resolved_llm_backend == "local"


@pytest.mark.parametrize(
    "bad",
    [{"chunk_size": 300}, {"chunk_size": 100, "chunk_overlap": 100}, {"retrieval_mode": "magic"}],
)
def test_bad_values_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **bad)
