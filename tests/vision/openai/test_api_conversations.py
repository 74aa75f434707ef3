"""/api/conversations: the caller's conversations only (others → 404), 401 without credentials."""

from __future__ import annotations

import pytest

from accounts.scope import scope_for
from vision.services.conversations import (
    TurnAnswer,
    TurnMessage,
    conversation_record_answer,
    conversation_record_request,
)

pytestmark = pytest.mark.django_db


def _login(api_client, user):
    api_client.force_authenticate(user)
    return api_client


def _chat(user, key="k1"):
    conversation = conversation_record_request(
        scope=scope_for(user),
        key=key,
        model="qwen3-vl-2b",
        messages=[
            TurnMessage(role="system", text="be brief"),
            TurnMessage(role="user", text="What is this?"),
        ],
    )
    conversation_record_answer(
        conversation=conversation,
        answer=TurnAnswer(
            text="A cat.", finish_reason="stop", prompt_tokens=9, completion_tokens=3, cached_tokens=0
        ),
    )
    return conversation


def test_list_and_detail_for_the_owner(api_client, user_factory):
    owner = user_factory()
    conversation = _chat(owner)
    _chat(user_factory(), key="k1")  # someone else's, same key

    listing = _login(api_client, owner).get("/api/conversations/")
    assert listing.status_code == 200
    results = listing.json()["results"]
    assert [c["id"] for c in results] == [conversation.pk]
    assert results[0]["title"] == "What is this?" and results[0]["message_count"] == 3

    detail = api_client.get(f"/api/conversations/{conversation.pk}")
    assert detail.status_code == 200
    messages = detail.json()["messages"]
    assert [(m["role"], m["text"]) for m in messages] == [
        ("system", "be brief"),
        ("user", "What is this?"),
        ("assistant", "A cat."),
    ]
    assert messages[2]["finish_reason"] == "stop" and messages[2]["completion_tokens"] == 3


def test_a_follow_up_turn_appends_only_new_messages(user_factory):
    user = user_factory()
    conversation = _chat(user)
    history = [
        TurnMessage(role="system", text="be brief"),
        TurnMessage(role="user", text="What is this?"),
        TurnMessage(role="assistant", text="A cat."),
        TurnMessage(role="user", text="Sure?"),
    ]
    again = conversation_record_request(
        scope=scope_for(user), key="k1", model="qwen3-vl-2b", messages=history
    )
    assert again.pk == conversation.pk
    assert [m.text for m in again.messages.order_by("position")] == [
        "be brief",
        "What is this?",
        "A cat.",
        "Sure?",
    ]


def test_other_users_conversations_are_404(api_client, user_factory):
    theirs = _chat(user_factory())
    client = _login(api_client, user_factory())
    assert client.get(f"/api/conversations/{theirs.pk}").status_code == 404
    assert client.delete(f"/api/conversations/{theirs.pk}").status_code == 404
    assert client.get("/api/conversations/").json()["results"] == []


def test_owner_can_delete(api_client, user_factory):
    owner = user_factory()
    conversation = _chat(owner)
    client = _login(api_client, owner)
    assert client.delete(f"/api/conversations/{conversation.pk}").status_code == 204
    assert client.get(f"/api/conversations/{conversation.pk}").status_code == 404


def test_unauthenticated_is_401(api_client, user_factory):
    conversation = _chat(user_factory())
    assert api_client.get("/api/conversations/").status_code == 401
    assert api_client.get(f"/api/conversations/{conversation.pk}").status_code == 401
