"""Chats of logged-in users, kept across turns: what the portal lists and /api/conversations serves.

OpenAI clients resend the whole history each turn; a turn appends only the messages the
conversation does not have yet plus the answer. Images are Document references (the stored
upload), never inline base64.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )  # the organisation it was held in; only its owner sees it
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    # sha256 of the client's conversation id, or of the opening messages (vision/chat/routing.py);
    # the same key in a later request is the same conversation.
    key = models.CharField(max_length=64)
    title = models.CharField(max_length=200, blank=True)  # the first user text, shortened
    model = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "owner", "key"], name="conversation_unique_org_owner_key"
            )
        ]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]

    def __str__(self) -> str:
        return f"Conversation {self.pk} ({self.title[:40]})"


class MessageRole(models.TextChoices):
    SYSTEM = "system", "System"
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class Message(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    position = models.PositiveIntegerField()  # 0-based order within the conversation
    role = models.CharField(max_length=10, choices=MessageRole.choices)
    text = models.TextField(blank=True)  # the text parts joined; images are in `images`
    images = models.ManyToManyField("vision.Document", blank=True, related_name="chat_messages")
    # Answers only: how it ended and what it cost.
    finish_reason = models.CharField(max_length=20, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "position"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "position"], name="message_unique_position"),
        ]

    def __str__(self) -> str:
        return f"Message {self.position} of conversation {self.conversation_id} ({self.role})"
