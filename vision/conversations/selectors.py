"""Reads of conversations. Scoped to the caller's organisation and to the caller: a chat is its
owner's, and another user's or organisation's conversation does not exist."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from docplatform.errors import NotFound
from vision.models import Conversation, Message


def conversation_list(*, scope) -> QuerySet[Conversation]:
    # Ordered again: Meta.ordering does not apply to a GROUP BY (the message count).
    rows = Conversation.objects.filter(organization=scope.organization, owner=scope.user).annotate(
        message_count=Count("messages")
    )
    return rows.order_by("-updated_at", "-id")


def conversation_get(*, scope, conversation_id: int) -> Conversation:
    conversation = conversation_list(scope=scope).filter(pk=conversation_id).first()
    if conversation is None:
        raise NotFound("Conversation not found.")
    return conversation


def conversation_messages(*, conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.prefetch_related("images").order_by("position")
