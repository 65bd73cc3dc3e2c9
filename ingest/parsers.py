"""Corpus parsers. Each is a pure function of lines to records, so it is tested without a store.

Three formats:
- ``listing``: the bundled paper-listing page dumps (``data/corpus/README.md``);
- ``jsonl``: one paper per line with ``title`` and ``abstract`` (optional ``id``, ``url``, ...);
- ``arxiv``: the arXiv metadata snapshot (one JSON object per line), streamed.

Files are read as bytes and decoded line by line, so a multi-GB snapshot never sits in memory and a
bad byte is reported with its line number.

Bounded (:class:`ReadLimits`, from the ``PAPERQA_INGEST_MAX_*`` settings): a line longer than the
line bound is skipped without ever being held whole (read on in small pieces to its end), a title or
abstract over its bound (characters as given) is skipped before any work is done on it, a JSON-array
file (read whole) over its bound is refused; each is reported with file and line and the rest of the
file still goes in. Every text a parser yields has
been through :func:`app.core.text.clean_text`: a JSON escape such as ``"\\ud800"`` or ``"\\u0000"``
never reaches the tokenizer or the store.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from app.core.errors import UnreadableFile
from app.core.records import (
    Paper,
    ParseIssue,
    normalize_space,
    paper_id_for,
    scalar_metadata,
)
from app.core.settings import Settings
from app.core.text import clean_text

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
CORPUS_SUFFIXES = frozenset({".txt", ".jsonl", ".json", ".ndjson"})
# An over-long line is read on and dropped in pieces of this size; its first bytes are kept to
# sniff a file's format from.
_DISCARD_BYTES = 64 * 1024
_HEAD_BYTES = 256
# Non-blank lines looked at to sniff a format (the first that fits the line bound is used).
_SNIFF_LINES = 20


@dataclass(frozen=True)
class ReadLimits:
    """The bounds of a record, a line and a JSON-array file (``PAPERQA_INGEST_MAX_*``, ``.env.example``)."""

    max_title_chars: int
    max_abstract_chars: int
    max_line_bytes: int
    max_array_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadLimits:
        return cls(
            max_title_chars=settings.ingest_max_title_chars,
            max_abstract_chars=settings.ingest_max_abstract_chars,
            max_line_bytes=settings.ingest_max_line_bytes,
            max_array_bytes=settings.ingest_max_array_bytes,
        )


# The documented defaults (model_construct reads no environment and no .env).
DEFAULT_LIMITS = ReadLimits.from_settings(Settings.model_construct())


@dataclass(frozen=True)
class LongLine:
    """A line over the byte bound: its size and first bytes only; the rest was read and dropped."""

    size: int
    limit: int
    head: bytes


def bounded_lines(handle: BinaryIO, limit: int) -> Iterator[bytes | LongLine]:
    """The lines of ``handle`` (line breaks kept), never holding more than ``limit + 1`` bytes of one:
    a line of more than ``limit`` bytes, its line break included, comes as a :class:`LongLine`."""
    while piece := handle.readline(limit + 1):
        if len(piece) <= limit:
            yield piece
            continue
        rest = 0 if piece.endswith(b"\n") else _skip_rest_of_line(handle)
        yield LongLine(size=len(piece) + rest, limit=limit, head=piece[:_HEAD_BYTES])


def _skip_rest_of_line(handle: BinaryIO) -> int:
    """Read on to the end of the current line in bounded pieces; the number of bytes dropped."""
    dropped = 0
    while rest := handle.readline(_DISCARD_BYTES):
        dropped += len(rest)
        if rest.endswith(b"\n"):
            break
    return dropped


def is_listing_boilerplate(line: str) -> bool:
    return line in LISTING_BOILERPLATE or bool(_DATE_LINE.match(line))


def decode_lines(raw_lines: Iterable[bytes | LongLine], source: str) -> Iterator[NumberedLine | ParseIssue]:
    """Decode UTF-8 line by line; a NUL byte means a binary file and stops the file; an over-long
    line (:func:`bounded_lines`) is reported and skipped, and the numbering stays right after it."""
    for number, raw in enumerate(raw_lines, start=1):
        if isinstance(raw, LongLine):
            yield ParseIssue(source, number, _long_line_message(raw))
            continue
        if b"\x00" in raw:
            raise UnreadableFile(
                f"{source}:{number}: looks like a binary file (NUL byte); give a UTF-8 text file"
            )
        try:
            # utf-8-sig on the first line: a byte-order mark is not part of the text.
            yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield ParseIssue(source, number, f"not valid UTF-8 ({exc.reason}); line skipped")


def _long_line_message(line: LongLine) -> str:
    return (
        f"line of {line.size} bytes is over the limit of {line.limit} bytes "
        "(PAPERQA_INGEST_MAX_LINE_BYTES); record skipped: check the record (one paper per line), "
        "or raise the limit"
    )


def parse_listing(
    lines: Iterable[NumberedLine | ParseIssue], source: str, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Record]:
    """Title line, then abstract line, repeated; boilerplate and blank lines dropped."""
    pending_title: tuple[int, str, int] | None = None  # line, title, characters as given
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
        text = clean_text(line).strip()
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
            pending_title = (number, normalize_space(text), len(text))
            continue
        title_line, title, title_chars = pending_title
        pending_title = None
        problem = over_limit(title_chars, len(text), limits)
        if problem is not None:
            yield ParseIssue(source, title_line, problem)
            continue
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
    lines: Iterable[NumberedLine | ParseIssue], source: str, limits: ReadLimits
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
        except RecursionError:
            yield ParseIssue(source, number, "JSON nested too deeply to read; give one flat object per paper")
            continue
        if not isinstance(value, dict):
            yield ParseIssue(source, number, f"expected a JSON object, got {type(value).__name__}")
            continue
        problem = fields_over_limit(value, limits)
        if problem is not None:
            yield ParseIssue(source, number, problem)
            continue
        yield number, clean_object(value)


def over_limit(title_chars: int, abstract_chars: int, limits: ReadLimits) -> str | None:
    """Why a record with a title and an abstract of these lengths (as given) is skipped, if it is."""
    if title_chars > limits.max_title_chars:
        return (
            f"title of {title_chars} characters is over the limit of {limits.max_title_chars} "
            "(PAPERQA_INGEST_MAX_TITLE_CHARS); record skipped: check that title and abstract are not "
            "swapped, or raise the limit"
        )
    if abstract_chars > limits.max_abstract_chars:
        return (
            f"abstract of {abstract_chars} characters is over the limit of {limits.max_abstract_chars} "
            "(PAPERQA_INGEST_MAX_ABSTRACT_CHARS); record skipped: check the record (an abstract, not a "
            "whole paper), or raise the limit"
        )
    return None


def fields_over_limit(obj: dict[str, object], limits: ReadLimits) -> str | None:
    """:func:`over_limit` of a JSON object's ``title`` and ``abstract``, checked before any work on them."""
    title, abstract = obj.get("title"), obj.get("abstract")
    return over_limit(
        len(title) if isinstance(title, str) else 0,
        len(abstract) if isinstance(abstract, str) else 0,
        limits,
    )


def clean_object(obj: dict[str, object]) -> dict[str, object]:
    """A JSON object's keys, strings and lists' strings through :func:`clean_text` (JSON escapes can
    spell lone surrogates and NULs). Nested objects are left alone: no parser keeps them."""
    return {clean_text(key): _clean_value(value) for key, value in obj.items()}


def _clean_value(value: object) -> object:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [clean_text(item) if isinstance(item, str) else item for item in value]
    return value


def _required_text(obj: dict[str, object], key: str) -> str:
    value = obj.get(key)
    return normalize_space(value) if isinstance(value, str) else ""


def parse_jsonl(
    lines: Iterable[NumberedLine | ParseIssue], source: str, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Record]:
    """One JSON object per line: ``title`` and ``abstract`` required, every other scalar kept."""
    for item in _json_objects(lines, source, limits):
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


def parse_arxiv(
    lines: Iterable[NumberedLine | ParseIssue], source: str, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Record]:
    """The arXiv metadata snapshot: ``id``, ``title``, ``abstract`` and a few useful fields."""
    for item in _json_objects(lines, source, limits):
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
    except (json.JSONDecodeError, RecursionError):
        return "jsonl"
    return _json_format(obj)


def _json_format(obj: object) -> Format:
    """``arxiv`` for an object (or an array whose first element is one) with arXiv's fields."""
    if isinstance(obj, list) and obj:
        obj = obj[0]
    if isinstance(obj, dict) and "update_date" in obj and "categories" in obj:
        return "arxiv"
    return "jsonl"


def unreadable_message(path: Path, exc: OSError) -> str:
    """What went wrong opening ``path`` (or listing it, for a folder), and what to do."""
    if isinstance(exc, IsADirectoryError):
        return f"{path}: is a directory; give a file, or its folder as a corpus path"
    if exc.errno == errno.ELOOP:
        return f"{path}: symbolic link loop (too many levels of links); fix the link or remove it"
    if isinstance(exc, FileNotFoundError) and os.path.islink(path):
        return (
            f"{path}: symbolic link to {_link_target(path)}, which does not exist; fix the link or remove it"
        )
    if isinstance(exc, FileNotFoundError):
        return f"{path}: no such file; check the path you gave"
    if isinstance(exc, PermissionError):
        return f"{path}: permission denied; make it readable by this user (chmod) or leave it out"
    return f"{path}: cannot be read ({exc.strerror or exc}); fix it or leave it out"


def _link_target(path: Path) -> str:
    try:
        return repr(os.readlink(path))
    except OSError:
        return "a path"


def _raise(problem: str) -> None:
    raise UnreadableFile(problem)


def corpus_files(paths: Iterable[Path], on_problem: Callable[[str], None] | None = None) -> list[Path]:
    """Expand directories to their corpus files (``*.txt``, ``*.jsonl``, ``*.json``), sorted.

    A path that does not exist raises :class:`UnreadableFile`. One that exists but cannot be
    reached (a symbolic link loop, a dangling link, a folder that cannot be listed) is given to
    ``on_problem`` and skipped; without ``on_problem`` it raises too. A file that cannot be opened
    is listed: :func:`read_file` reports it.
    """
    report = on_problem or _raise
    files: list[Path] = []
    for path in paths:
        try:
            mode = path.stat().st_mode
        except (FileNotFoundError, NotADirectoryError) as exc:
            if not os.path.islink(path):
                raise UnreadableFile(f"{path}: no such file or directory; check the path you gave") from None
            report(unreadable_message(path, exc))
            continue
        except OSError as exc:
            report(unreadable_message(path, exc))
            continue
        if stat.S_ISDIR(mode):
            files.extend(_folder_files(path, report))
        else:
            files.append(path)
    return files


def _folder_files(folder: Path, report: Callable[[str], None]) -> list[Path]:
    """A folder's corpus files, sorted; an entry that cannot be reached is reported and skipped."""
    try:
        entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in CORPUS_SUFFIXES)
    except OSError as exc:
        report(
            f"{folder}: folder cannot be listed ({exc.strerror or exc}); make it readable by this user "
            "(chmod u+rx) or leave it out"
        )
        return []
    files: list[Path] = []
    for entry in entries:
        try:
            mode = entry.stat().st_mode
        except OSError as exc:
            report(unreadable_message(entry, exc))
            continue
        if stat.S_ISREG(mode):
            files.append(entry)
    return files


def read_file(path: Path, fmt: Format | None = None, limits: ReadLimits = DEFAULT_LIMITS) -> Iterator[Record]:
    """Stream one file's records. Raises :class:`UnreadableFile` for a file that has none to give
    (missing, unreadable, empty, binary, a JSON array over its bound) or that fails mid-read."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UnreadableFile(unreadable_message(path, exc)) from None
    with handle:
        try:
            yield from _file_records(handle, path, fmt, limits)
        except OSError as exc:
            raise UnreadableFile(
                f"{path}: reading failed ({exc.strerror or exc}); check the file and ingest it again"
            ) from None


def _file_records(handle: BinaryIO, path: Path, fmt: Format | None, limits: ReadLimits) -> Iterator[Record]:
    source = path.name
    head = handle.read(4096)
    if not head.strip():
        raise UnreadableFile(f"{path}: file is empty; nothing to ingest")
    if b"\x00" in head:
        raise UnreadableFile(f"{path}: looks like a binary file (NUL byte); give a UTF-8 text file")
    handle.seek(0)
    start, first_line = _sniff_lines(handle, limits.max_line_bytes)
    handle.seek(0)
    if start.lstrip().startswith("[") and fmt != "listing":
        # A JSON array (pretty-printed or not): read whole, one record per element.
        items = _parse_array(_read_array(handle, path, limits.max_array_bytes), source)
        if isinstance(items, ParseIssue):
            yield items
            return
        chosen = fmt or _json_format(items)
        yield from PARSERS[chosen](_array_items(items, source, limits), source, limits)
        return
    chosen = fmt or sniff_format(path, first_line)
    lines = decode_lines(bounded_lines(handle, limits.max_line_bytes), source)
    yield from PARSERS[chosen](lines, source, limits)


def _sniff_lines(handle: BinaryIO, limit: int) -> tuple[str, str]:
    """The start of the first non-blank line (is the file a JSON array?) and the first non-blank
    line that fits the line bound, among the first few (the format is sniffed from it)."""
    start: str | None = None
    seen = 0
    for raw in bounded_lines(handle, limit):
        text = raw.head if isinstance(raw, LongLine) else raw
        if not text.strip():
            continue
        decoded = text.decode("utf-8-sig", errors="replace")
        start = decoded if start is None else start
        seen += 1
        if not isinstance(raw, LongLine):
            return start, decoded
        if seen >= _SNIFF_LINES:
            break
    return start or "", start or ""


def _read_array(handle: BinaryIO, path: Path, limit: int) -> bytes:
    """A JSON-array file's bytes; over ``limit``, refused before reading it."""
    size = os.fstat(handle.fileno()).st_size
    raw = b"" if size > limit else handle.read(limit + 1)
    if size > limit or len(raw) > limit:
        raise UnreadableFile(
            f"{path}: a JSON array file of {max(size, len(raw))} bytes is over the limit of {limit} "
            "bytes (PAPERQA_INGEST_MAX_ARRAY_BYTES), and an array is read whole; convert it to JSON "
            f"lines, one paper object per line (e.g. jq -c '.[]' {path.name} > {path.stem}.jsonl), "
            "which are read one at a time, or raise the limit"
        )
    return raw


def _parse_array(raw: bytes, source: str) -> list[object] | ParseIssue:
    try:
        items = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return ParseIssue(source, 1, f"not a valid JSON array ({exc}); file skipped")
    except RecursionError:
        return ParseIssue(source, 1, "JSON array nested too deeply to read; file skipped")
    if not isinstance(items, list):
        return ParseIssue(source, 1, "expected a JSON array of paper objects; file skipped")
    return items


def _array_items(items: list[object], source: str, limits: ReadLimits) -> Iterator[NumberedLine | ParseIssue]:
    """Elements of a JSON array as numbered JSON lines (the number is the element's position); one
    over a bound is reported without more work on it. Each element is dropped from ``items`` once
    given, so the memory held falls as the file is read."""
    for index, item in enumerate(items):
        items[index] = None
        problem = fields_over_limit(item, limits) if isinstance(item, dict) else None
        yield (index + 1, json.dumps(item)) if problem is None else ParseIssue(source, index + 1, problem)
