import base64
import json
from datetime import timedelta

import pytest
from rest_framework_simplejwt.tokens import AccessToken

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def _obtain(api_client, user) -> dict:
    response = api_client.post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def _me(api_client, token: str):
    return api_client.get("/api/auth/me/", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_obtain_and_use_access_token(api_client, user_factory):
    """GIVEN a member WHEN they obtain a JWT THEN it authenticates /api/auth/me/."""
    user = user_factory()
    tokens = _obtain(api_client, user)

    response = _me(api_client, tokens["access"])

    assert response.status_code == 200
    assert response.json() == {
        "id": user.id,
        "username": user.username,
        "email": "",
        "roles": ["member"],
        "is_staff": False,
        "organization": user.username,  # the personal organisation, named after the user
        "role": "member",
    }


def test_wrong_password_is_401(api_client, user_factory):
    user = user_factory()
    response = api_client.post(
        "/api/auth/token/", {"username": user.username, "password": "nope"}, format="json"
    )
    assert response.status_code == 401


def test_refresh_rotates_and_blacklists_the_old_refresh_token(api_client, user_factory):
    """GIVEN a refresh token WHEN it is used THEN a new pair comes back and the old one is dead."""
    tokens = _obtain(api_client, user_factory())

    refreshed = api_client.post("/api/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200
    body = refreshed.json()
    assert body["refresh"] != tokens["refresh"]
    assert _me(api_client, body["access"]).status_code == 200

    reused = api_client.post("/api/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert reused.status_code == 401
    again = api_client.post("/api/auth/token/refresh/", {"refresh": body["refresh"]}, format="json")
    assert again.status_code == 200


def test_logout_blacklists_the_refresh_token(api_client, user_factory):
    tokens = _obtain(api_client, user_factory())

    response = api_client.post("/api/auth/logout/", {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 205
    refused = api_client.post("/api/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert refused.status_code == 401


def test_logout_with_garbage_token_is_400(api_client):
    response = api_client.post("/api/auth/logout/", {"refresh": "garbage"}, format="json")
    assert response.status_code == 400
    assert "Invalid refresh token" in response.json()["detail"]


def test_expired_access_token_is_401(api_client, user_factory):
    user = user_factory()
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))

    assert _me(api_client, str(token)).status_code == 401


def test_tampered_access_token_is_401(api_client, user_factory):
    """GIVEN a valid token WHEN its payload is edited (signature kept) THEN it is refused."""
    user = user_factory()
    other = user_factory()
    header, payload, signature = _obtain(api_client, user)["access"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["user_id"] = str(other.id)
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    assert _me(api_client, f"{header}.{forged_payload}.{signature}").status_code == 401


def test_alg_none_token_is_401(api_client, user_factory):
    user = user_factory()
    _, payload, _ = _obtain(api_client, user)["access"].split(".")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()

    assert _me(api_client, f"{none_header}.{payload}.").status_code == 401


def test_no_credentials_is_401_with_www_authenticate(api_client):
    response = api_client.get("/api/auth/me/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
