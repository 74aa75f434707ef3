"""Shared pieces of the hostile-input suite: a member with an API key, and the invariant every
refusal must keep: a clear 4xx, nothing stored (rows and files counted before and after), and the
service still healthy (/healthz 200)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from django.test import Client

from accounts.scope import scope_for


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@dataclass
class Member:
    user: object
    key: str

    def client(self, **extra) -> Client:
        return Client(HTTP_AUTHORIZATION=f"Bearer {self.key}", **extra)


@pytest.fixture
def member(user_factory) -> Member:
    from accounts.services import api_key_create

    user = user_factory()
    return Member(user=user, key=api_key_create(scope=scope_for(user), name="hostile").raw_key)


def stored_state(media_root: Path) -> dict[str, int]:
    from accounts.models import ApiKey
    from vision.models import Batch, Conversation, Document, DocumentPage, Extraction, Job, Message

    counts = {
        model.__name__: model.objects.count()
        for model in (Document, DocumentPage, Job, Batch, Conversation, Message, Extraction, ApiKey)
    }
    counts["files"] = (
        sum(1 for path in Path(media_root).rglob("*") if path.is_file()) if Path(media_root).exists() else 0
    )
    return counts


class Refusal:
    """`with Refusal(media_root) as check: response = ...; check(response, 413, code=...)`."""

    def __init__(self, media_root: Path) -> None:
        self.media_root = media_root

    def __enter__(self) -> Refusal:
        self.before = stored_state(self.media_root)
        return self

    def __call__(
        self, response, status: int | set[int], *, code: str | None = None, openai: bool = False
    ) -> dict:
        statuses = {status} if isinstance(status, int) else status
        body = response.content.decode(errors="replace")
        assert response.status_code in statuses, (response.status_code, body[:500])
        assert 400 <= response.status_code < 500
        assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
        payload = response.json()
        if openai:
            error = payload["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["message"], payload
            if code:
                assert error["code"] == code, payload
        elif code:
            assert payload.get("code") == code, payload
        assert "Traceback" not in body
        self.payload = payload
        return payload

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            assert stored_state(self.media_root) == self.before, "a refused request stored something"
            assert Client().get("/healthz").status_code == 200
