"""The limits on a conversation that come from the settings, and its conversion for the pipeline.

Types, roles and "every user message is non-blank; the question is the last one" are checked by the
request models (:mod:`app.http.schemas`, which call :func:`app.retrieval.queries.question_problem`);
the OpenAPI document states the same rules with these limits (``schemas.request_schemas``).
"""

from __future__ import annotations

from collections.abc import Sequence

from app.core.errors import InvalidRequest
from app.core.settings import Settings
from app.http.schemas import ChatCompletionRequest, ChatMessage
from app.retrieval.queries import Turn, up_to_the_question


def check_texts(texts_per_message: Sequence[Sequence[str]], settings: Settings) -> None:
    """At most ``max_messages`` messages, and every text of them (a message's content, or each text
    part of an OpenAI message) at most ``max_message_chars``; else :class:`InvalidRequest` (422)."""
    if len(texts_per_message) > settings.max_messages:
        raise InvalidRequest(
            f"too many messages: {len(texts_per_message)} (at most {settings.max_messages}); "
            "send only the recent part of the conversation"
        )
    for index, texts in enumerate(texts_per_message):
        for text in texts:
            if len(text) > settings.max_message_chars:
                raise InvalidRequest(
                    f"messages[{index}] is too long: {len(text)} characters "
                    f"(at most {settings.max_message_chars})"
                )


def check_conversation(messages: Sequence[ChatMessage], settings: Settings) -> list[Turn]:
    """The messages as turns for the pipeline, up to the question, or :class:`InvalidRequest`."""
    check_texts([[m.content] for m in messages], settings)
    return up_to_the_question([{"role": m.role, "content": m.content} for m in messages])


def openai_conversation(body: ChatCompletionRequest, settings: Settings) -> list[Turn]:
    """The same for an OpenAI request (``developer`` read as ``system``, text parts joined)."""
    check_texts([m.strings() for m in body.messages], settings)
    return up_to_the_question([{"role": m.role, "content": m.content} for m in body.plain_messages()])
