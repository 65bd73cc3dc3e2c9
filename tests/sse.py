"""Reading Server-Sent Events in tests: one parser, for whole bodies and for streams."""

from __future__ import annotations

from collections.abc import Iterator


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """``(event, data)`` pairs from SSE lines (comments skipped; the event defaults to message)."""
    name, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield name, "\n".join(data)


def parse_sse(text: str) -> list[tuple[str, str]]:
    """``[(event, data), ...]`` from a whole SSE body."""
    return list(sse_events(iter(text.replace("\r\n", "\n").replace("\r", "\n").split("\n") + [""])))
