"""Corpus parsers. Each is a pure function of lines to records, so it is tested without a store.

Three formats:
- ``listing``: the bundled paper-listing page dumps (``data/corpus/README.md``);
- ``jsonl``: one paper per line with ``title`` and ``abstract`` (optional ``id``, ``url``, ...);
- ``arxiv``: the arXiv metadata snapshot (one JSON object per line), streamed.

Files are read as bytes and decoded line by line, so a multi-GB snapshot never sits in memory and a
bad byte is reported with its line number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from app.core.errors import UnreadableFile
from app.core.records import (
    Paper,
    ParseIssue,
    normalize_space,
    paper_id_for,
    scalar_metadata,
)

Format = Literal["listing", "jsonl", "arxiv"]
Record = Paper | ParseIssue
NumberedLine = tuple[int, str]

LISTING_BOILERPLATE = frozenset(
    {
        "Get trending papers in your email inbox once a day!",
        "Get trending papers in your email inbox!",
        "Subscribe",
        "new",
        "byAK and the research community",
    }
)
_DATE_LINE = re.compile(r"^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* \d{1,2}(, \d{4})?$")
_GLUED_PREFIX = "Subscribe"
MAX_TITLE_CHARS = 400
MIN_ABSTRACT_CHARS = 40


def is_listing_boilerplate(line: str) -> bool:
    return line in LISTING_BOILERPLATE or bool(_DATE_LINE.match(line))


def decode_lines(raw_lines: Iterable[bytes], source: str) -> Iterator[NumberedLine | ParseIssue]:
    """Decode UTF-8 line by line; a NUL byte means a binary file and stops the file."""
    for number, raw in enumerate(raw_lines, start=1):
        if b"\x00" in raw:
            raise UnreadableFile(
                f"{source}:{number}: looks like a binary file (NUL byte); give a UTF-8 text file"
            )
        try:
            # utf-8-sig on the first line: a byte-order mark is not part of the text.
            yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield ParseIssue(source, number, f"not valid UTF-8 ({exc.reason}); line skipped")


def parse_listing(lines: Iterable[NumberedLine | ParseIssue], source: str) -> Iterator[Record]:
    """Title line, then abstract line, repeated; boilerplate and blank lines dropped."""
    pending_title: NumberedLine | None = None
    first = True
    for item in lines:
        if isinstance(item, ParseIssue):
            yield item
            if pending_title is not None:
                # Its abstract was unreadable: never pair the title with whatever comes next.
                yield ParseIssue(
                    source,
                    pending_title[0],
                    f"title {pending_title[1]!r} lost its abstract to the unreadable line {item.line}; skipped",
                )
                pending_title = None
            continue
        number, line = item
        text = line.strip()
        if not text or is_listing_boilerplate(text):
            continue
        if first and pending_title is None and text.startswith(_GLUED_PREFIX):
            # The first title of a page can be glued to the "Subscribe" button's text.
            text = text[len(_GLUED_PREFIX) :].strip()
            if not text:
                continue
        first = False
        if pending_title is None:
            if len(text) > MAX_TITLE_CHARS:
                yield ParseIssue(source, number, "expected a title line but found a long paragraph; skipped")
                continue
            pending_title = (number, normalize_space(text))
            continue
        title_line, title = pending_title
        pending_title = None
        abstract = normalize_space(text)
        if len(abstract) < MIN_ABSTRACT_CHARS:
            yield ParseIssue(
                source,
                title_line,
                f"title {title!r} is followed by {abstract!r}, too short for an abstract; skipped",
            )
            continue
        yield Paper(
            id=paper_id_for(None, title),
            title=title,
            abstract=abstract,
            source=source,
            line=title_line,
        )
    if pending_title is not None:
        yield ParseIssue(
            source, pending_title[0], f"title {pending_title[1]!r} has no abstract after it; skipped"
        )


def _json_objects(
    lines: Iterable[NumberedLine | ParseIssue], source: str
) -> Iterator[tuple[int, dict[str, object]] | ParseIssue]:
    for item in lines:
        if isinstance(item, ParseIssue):
            yield item
            continue
        number, line = item
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield ParseIssue(source, number, f"malformed JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(value, dict):
            yield ParseIssue(source, number, f"expected a JSON object, got {type(value).__name__}")
            continue
        yield number, value


def _required_text(obj: dict[str, object], key: str) -> str:
    value = obj.get(key)
    return normalize_space(value) if isinstance(value, str) else ""


def parse_jsonl(lines: Iterable[NumberedLine | ParseIssue], source: str) -> Iterator[Record]:
    """One JSON object per line: ``title`` and ``abstract`` required, every other scalar kept."""
    for item in _json_objects(lines, source):
        if isinstance(item, ParseIssue):
            yield item
            continue
        number, obj = item
        title, abstract = _required_text(obj, "title"), _required_text(obj, "abstract")
        missing = [name for name, value in (("title", title), ("abstract", abstract)) if not value]
        if missing:
            yield ParseIssue(source, number, f"missing or empty {' and '.join(missing)}; skipped")
            continue
        raw_id = obj.get("id")
        yield Paper(
            id=paper_id_for(str(raw_id) if raw_id not in (None, "") else None, title),
            title=title,
            abstract=abstract,
            source=source,
            line=number,
            metadata=scalar_metadata(obj, skip={"id", "title", "abstract"}),
        )


ARXIV_FIELDS = ("authors", "categories", "update_date", "doi", "journal-ref")


def parse_arxiv(lines: Iterable[NumberedLine | ParseIssue], source: str) -> Iterator[Record]:
    """The arXiv metadata snapshot: ``id``, ``title``, ``abstract`` and a few useful fields."""
    for item in _json_objects(lines, source):
        if isinstance(item, ParseIssue):
            yield item
            continue
        number, obj = item
        title, abstract = _required_text(obj, "title"), _required_text(obj, "abstract")
        arxiv_id = _required_text(obj, "id")
        missing = [
            name for name, value in (("id", arxiv_id), ("title", title), ("abstract", abstract)) if not value
        ]
        if missing:
            yield ParseIssue(source, number, f"missing or empty {' and '.join(missing)}; skipped")
            continue
        metadata = scalar_metadata({k: obj.get(k) for k in ARXIV_FIELDS}, skip=set())
        if "update_date" in metadata:
            metadata["date"] = metadata.pop("update_date")
        metadata["url"] = f"https://arxiv.org/abs/{arxiv_id}"
        yield Paper(
            id=paper_id_for(arxiv_id, title),
            title=title,
            abstract=abstract,
            source=source,
            line=number,
            metadata=metadata,
        )


PARSERS = {"listing": parse_listing, "jsonl": parse_jsonl, "arxiv": parse_arxiv}


def sniff_format(path: Path, first_line: str) -> Format:
    """``.txt`` is a listing dump; JSON lines with arXiv's fields are the snapshot; else JSONL."""
    stripped = first_line.lstrip()
    if path.suffix.lower() in {".txt", ".text", ""} and not stripped.startswith(("{", "[")):
        return "listing"
    try:
        obj = json.loads(first_line)
    except json.JSONDecodeError:
        return "jsonl"
    if isinstance(obj, list) and obj:
        obj = obj[0]
    if isinstance(obj, dict) and "update_date" in obj and "categories" in obj:
        return "arxiv"
    return "jsonl"


def corpus_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories to their corpus files (``*.txt``, ``*.jsonl``, ``*.json``), sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.iterdir()
                    if p.is_file() and p.suffix.lower() in {".txt", ".jsonl", ".json", ".ndjson"}
                )
            )
        elif path.exists():
            files.append(path)
        else:
            raise UnreadableFile(f"{path}: no such file or directory; check the path you gave")
    return files


def read_file(path: Path, fmt: Format | None = None) -> Iterator[Record]:
    """Stream one file's records. Raises :class:`UnreadableFile` for a file that has none to give."""
    source = path.name
    if not path.exists():
        raise UnreadableFile(f"{path}: no such file; check the path you gave")
    if path.is_dir():
        raise UnreadableFile(f"{path}: is a directory; give a file, or its folder as a corpus path")
    with path.open("rb") as handle:
        head = handle.read(4096)
        if not head.strip():
            raise UnreadableFile(f"{path}: file is empty; nothing to ingest")
        if b"\x00" in head:
            raise UnreadableFile(f"{path}: looks like a binary file (NUL byte); give a UTF-8 text file")
        handle.seek(0)
        first_line = ""
        for raw in handle:
            if raw.strip():
                first_line = raw.decode("utf-8-sig", errors="replace")
                break
        handle.seek(0)
        chosen = fmt or sniff_format(path, first_line)
        if first_line.lstrip().startswith("[") and chosen != "listing":
            # A JSON array (pretty-printed or not): read whole, one record per element.
            yield from PARSERS[chosen](_array_items(handle.read(), source), source)
            return
        yield from PARSERS[chosen](decode_lines(handle, source), source)


def _array_items(raw: bytes, source: str) -> Iterator[NumberedLine | ParseIssue]:
    """Elements of a JSON array as numbered JSON lines (the number is the element's position)."""
    try:
        items = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        yield ParseIssue(source, 1, f"not a valid JSON array ({exc}); file skipped")
        return
    if not isinstance(items, list):
        yield ParseIssue(source, 1, "expected a JSON array of paper objects; file skipped")
        return
    for position, item in enumerate(items, start=1):
        yield position, json.dumps(item)
