"""Conversation services store what a client sent and what the model said, on every database."""

import pytest

from accounts.scope import scope_for
from docplatform.storable import storable_json, storable_text

pytestmark = pytest.mark.django_db


def test_nul_in_messages_and_answers_is_stored_as_the_replacement_character(user_factory):
    """PostgreSQL text cannot hold U+0000 (SQLite can); model output and client text may carry it.
    Both databases store U+FFFD instead of one of them failing the request."""
    from vision.models import Message
    from vision.services.conversations import (
        TurnAnswer,
        TurnMessage,
        conversation_record_answer,
        conversation_record_request,
    )

    user = user_factory()
    conversation = conversation_record_request(
        scope=scope_for(user), key="k", model="m", messages=[TurnMessage(role="user", text="a\x00b")]
    )
    conversation_record_answer(
        conversation=conversation,
        answer=TurnAnswer(
            text="x\x00\x00y", finish_reason="length", prompt_tokens=3, completion_tokens=4, cached_tokens=0
        ),
    )
    texts = list(
        Message.objects.filter(conversation=conversation).order_by("position").values_list("text", flat=True)
    )
    assert texts == ["a\ufffdb", "x\ufffd\ufffdy"]
    conversation.refresh_from_db()
    assert conversation.title == "a\ufffdb"


def test_storable_helpers():
    assert storable_text("plain") == "plain"
    assert storable_json({"k\x00": ["v\x00", 1, None, {"n": "\x00"}]}) == {
        "k\ufffd": ["v\ufffd", 1, None, {"n": "\ufffd"}]
    }
