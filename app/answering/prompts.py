"""Prompt files, loaded once and checked: each must use exactly its expected placeholders."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import PromptError

__all__ = ["EXPECTED", "PromptError", "Prompts", "check_template", "load_prompts", "placeholders"]

EXPECTED: dict[str, frozenset[str]] = {
    "system": frozenset(),
    "answer": frozenset({"sources", "question"}),
    "condense": frozenset({"history", "question"}),
    "no_answer": frozenset(),
    "compose": frozenset({"question", "name", "evidence"}),
}


@dataclass(frozen=True)
class Prompts:
    system: str
    answer: str
    condense: str
    no_answer: str
    compose: str


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def check_template(name: str, template: str) -> None:
    try:
        found = placeholders(template)
    except ValueError as exc:
        raise PromptError(f"prompts/{name}.md: {exc} (write literal braces as {{{{ and }}}})") from exc
    expected = EXPECTED[name]
    if found != expected:
        missing, unknown = sorted(expected - found), sorted(found - expected)
        raise PromptError(
            f"prompts/{name}.md: placeholders must be {sorted(expected) or 'none'}; "
            f"missing {missing}, unknown {unknown}"
        )


def load_prompts(folder: Path) -> Prompts:
    texts: dict[str, str] = {}
    for name in EXPECTED:
        path = folder / f"{name}.md"
        if not path.is_file():
            raise PromptError(
                f"{path}: prompt file missing; set PAPERQA_PROMPTS_DIR to a folder with {sorted(EXPECTED)}"
            )
        text = path.read_text(encoding="utf-8").strip()
        check_template(name, text)
        texts[name] = text
    return Prompts(**texts)
