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
