"""Reads of conversations. Always scoped to the owner: another user's conversation does not exist."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from docplatform.errors import NotFound
from vision.models import Conversation, Message


def conversation_list(*, user) -> QuerySet[Conversation]:
    # Ordered again: Meta.ordering does not apply to a GROUP BY (the message count).
    rows = Conversation.objects.filter(owner=user).annotate(message_count=Count("messages"))
    return rows.order_by("-updated_at", "-id")


def conversation_get(*, user, conversation_id: int) -> Conversation:
    conversation = conversation_list(user=user).filter(pk=conversation_id).first()
    if conversation is None:
        raise NotFound("Conversation not found.")
    return conversation


def conversation_messages(*, conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.prefetch_related("images").order_by("position")
