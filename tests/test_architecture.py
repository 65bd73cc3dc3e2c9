"""The direction of dependencies, as ``pyproject.toml`` states it for import-linter: ``app/`` is
layered (http -> services -> answering -> retrieval -> core), ``app/`` never imports ``ingest/``,
and ``ingest/`` writes the store through ``app.core`` alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_import_contracts_are_kept() -> None:
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_a_broken_contract_is_caught(tmp_path: Path) -> None:
    """The check can fail: a core module importing the HTTP layer breaks the layers contract."""
    for package in ("app", "ingest", "eval", "bench"):
        shutil.copytree(PROJECT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "pyproject.toml", tmp_path / "pyproject.toml")
    text = tmp_path / "app" / "core" / "text.py"
    text.write_text(text.read_text(encoding="utf-8") + "\nimport app.http.app\n", encoding="utf-8")
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode != 0, done.stdout[-2000:]
    assert "app is layered" in done.stdout and "BROKEN" in done.stdout


def internal_imports() -> list[tuple[str, int, str, str | None]]:
    """Every import of a project module in the project's code, function-level ones included:
    ``(file, line, module, name or None)``."""
    import ast

    found = []
    for package in ("app", "ingest", "eval", "bench", "tests"):
        for path in sorted((PROJECT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    if node.module.split(".")[0] in ("app", "ingest", "eval", "bench", "tests"):
                        found += [
                            (str(path.relative_to(PROJECT)), node.lineno, node.module, a.name)
                            for a in node.names
                        ]
                elif isinstance(node, ast.Import):
                    found += [
                        (str(path.relative_to(PROJECT)), node.lineno, a.name, None)
                        for a in node.names
                        if a.name.split(".")[0] in ("app", "ingest", "eval", "bench", "tests")
                    ]
    return found


def test_every_internal_import_resolves() -> None:
    """A module removed or renamed breaks no import anywhere, not even one inside a function that
    no test calls (bench and eval commands)."""
    import importlib

    broken = []
    for file, line, module, name in internal_imports():
        try:
            imported = importlib.import_module(module)
        except ImportError as exc:
            broken.append(f"{file}:{line}: {module}: {exc}")
            continue
        if name is not None and name != "*" and not hasattr(imported, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                broken.append(f"{file}:{line}: {module} has no {name}")
    assert broken == [], "\n".join(broken)
