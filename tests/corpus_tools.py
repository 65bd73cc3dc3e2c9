"""Small corpora for the store tests, made from the real abstracts of the bundled corpus."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from app.core.records import Paper, paper_id_for
from ingest.parsers import corpus_files, read_file

CORPUS_DIR = Path(__file__).resolve().parent.parent / "data" / "corpus"


@lru_cache(maxsize=1)
def real_papers() -> tuple[Paper, ...]:
    """The bundled corpus's distinct papers, in file order."""
    seen: dict[str, Paper] = {}
    for path in corpus_files([CORPUS_DIR]):
        for record in read_file(path):
            if isinstance(record, Paper) and record.id not in seen:
                seen[record.id] = record
    return tuple(seen.values())


def synthetic_papers(n: int, tag: str = "Synthetic", start: int = 0) -> list[dict]:
    """``n`` JSONL records: real abstracts under new titles (and so new ids), ``tag`` in each title."""
    papers = real_papers()
    records = []
    for i in range(start, start + n):
        source = papers[i % len(papers)]
        title = f"{tag} Study {i:04d} of {source.title}"
        records.append({"title": title, "abstract": source.abstract})
    return records


def ids_of(records: list[dict]) -> list[str]:
    return [paper_id_for(r.get("id"), r["title"]) for r in records]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path
