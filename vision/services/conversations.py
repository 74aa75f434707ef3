"""Keeping chats: a request's new messages and then its answer are appended to the conversation.

OpenAI clients resend the whole history each turn. The conversation (found by its key, see
vision/chat/routing.py) already holds the first N messages, so only the request's messages past N
are appended. Images are references to the user's Documents.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Max

from docplatform.storable import storable_text
from vision.models import Conversation, Document, Message

logger = logging.getLogger(__name__)

TITLE_LENGTH = 80


@dataclass(frozen=True)
class TurnMessage:
    role: str
    text: str  # the text parts joined by newlines
    document_ids: tuple[int, ...] = ()  # the user's Documents shown in this message, in order


@dataclass(frozen=True)
class TurnAnswer:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


def conversation_record_request(
    *, scope, key: str, model: str, messages: Sequence[TurnMessage]
) -> Conversation:
    """Find or start the user's conversation `key` in the scope's organisation and append the
    messages it does not have yet."""
    title = storable_text(next((m.text for m in messages if m.role == "user" and m.text), "")[:TITLE_LENGTH])
    for attempt in range(2):  # a concurrent turn may win the race for the same positions once
        try:
            with transaction.atomic():
                conversation, _ = Conversation.objects.get_or_create(
                    organization=scope.organization,
                    owner=scope.user,
                    key=key,
                    defaults={"model": model, "title": title},
                )
                stored = conversation.messages.count()
                for position, message in enumerate(messages[stored:], start=stored):
                    row = Message.objects.create(
                        conversation=conversation,
                        position=position,
                        role=message.role,
                        text=storable_text(message.text),
                    )
                    if message.document_ids:
                        row.images.set(
                            Document.objects.filter(
                                organization=scope.organization, pk__in=message.document_ids
                            )
                        )
                conversation.model = model
                conversation.save(update_fields=["model", "updated_at"])
                return conversation
        except IntegrityError:
            if attempt:
                raise
            logger.info("conversation %s: concurrent turn, retrying the append", key[:12])
    raise AssertionError("unreachable")


def conversation_record_answer(*, conversation: Conversation, answer: TurnAnswer) -> Message:
    with transaction.atomic():
        last = conversation.messages.aggregate(last=Max("position"))["last"]
        message = Message.objects.create(
            conversation=conversation,
            position=0 if last is None else last + 1,
            role="assistant",
            text=storable_text(answer.text),
            finish_reason=answer.finish_reason,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            cached_tokens=answer.cached_tokens,
        )
        conversation.save(update_fields=["updated_at"])
    return message


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete the conversation and its messages; the Documents stay (they are the user's uploads)."""
    conversation.delete()
