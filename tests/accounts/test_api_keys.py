import hashlib

import pytest
from django.db import connection

from accounts.models import ApiKey

pytestmark = pytest.mark.django_db


def _create_key(api_client, user, name: str = "laptop") -> dict:
    api_client.force_authenticate(user)
    response = api_client.post("/api/auth/keys/", {"name": name}, format="json")
    api_client.force_authenticate(None)
    assert response.status_code == 201, response.content
    return response.json()


def test_created_key_works_as_bearer(api_client, user_factory):
    """GIVEN a new API key WHEN sent as Bearer THEN the request runs as its owner."""
    user = user_factory()
    created = _create_key(api_client, user)
    assert created["key"].startswith("dp_")
    assert created["prefix"] == created["key"][:11]

    response = api_client.get("/api/auth/me/", HTTP_AUTHORIZATION=f"Bearer {created['key']}")

    assert response.status_code == 200
    assert response.json()["username"] == user.username
    assert ApiKey.objects.get(pk=created["id"]).last_used_at is not None


def test_revoked_key_is_401(api_client, user_factory):
    user = user_factory()
    created = _create_key(api_client, user)
    api_client.force_authenticate(user)
    assert api_client.delete(f"/api/auth/keys/{created['id']}/").status_code == 204
    api_client.force_authenticate(None)

    response = api_client.get("/api/auth/me/", HTTP_AUTHORIZATION=f"Bearer {created['key']}")

    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid, expired or revoked API key."


def test_unknown_key_is_401(api_client, db):
    response = api_client.get("/api/auth/me/", HTTP_AUTHORIZATION="Bearer dp_not-a-real-key")
    assert response.status_code == 401


def test_keys_are_listed_only_for_their_owner(api_client, user_factory):
    alice, bob = user_factory(), user_factory()
    alice_key = _create_key(api_client, alice, "alice's")
    _create_key(api_client, bob, "bob's")

    api_client.force_authenticate(bob)
    listed = api_client.get("/api/auth/keys/").json()
    revoke_other = api_client.delete(f"/api/auth/keys/{alice_key['id']}/")

    assert [key["name"] for key in listed] == ["bob's"]
    assert "key" not in listed[0]
    assert revoke_other.status_code == 404
    assert ApiKey.objects.get(pk=alice_key["id"]).revoked_at is None


def test_raw_key_is_not_stored(api_client, user_factory):
    """GIVEN a created key THEN no column of any row holds it; only its SHA-256 is kept."""
    created = _create_key(api_client, user_factory())
    raw = created["key"]

    row = ApiKey.objects.get(pk=created["id"])
    assert row.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        values = [str(value) for row in cursor.fetchall() for value in row]
    assert not any(raw in value or value in raw and len(value) > 16 for value in values)


def test_key_endpoints_need_authentication(api_client, db):
    assert api_client.get("/api/auth/keys/").status_code == 401
    assert api_client.post("/api/auth/keys/", {"name": "x"}, format="json").status_code == 401
