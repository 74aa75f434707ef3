import pytest

pytestmark = pytest.mark.django_db


def test_anonymous_burst_gets_429_with_retry_after(api_client, settings):
    settings.API_THROTTLE_RATES = {"anon": "3/minute", "user": "100/minute"}

    statuses = [api_client.post("/api/auth/logout/", {}, format="json").status_code for _ in range(4)]

    assert statuses == [400, 400, 400, 429]
    response = api_client.post("/api/auth/logout/", {}, format="json")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60


def test_user_burst_gets_429_with_retry_after(api_client, user_factory, settings):
    settings.API_THROTTLE_RATES = {"anon": "100/minute", "user": "5/minute"}
    api_client.force_authenticate(user_factory())

    statuses = [api_client.get("/api/auth/me/").status_code for _ in range(6)]

    assert statuses == [200] * 5 + [429]
    assert int(api_client.get("/api/auth/me/")["Retry-After"]) > 0


def test_users_are_throttled_separately(api_client, user_factory, settings):
    settings.API_THROTTLE_RATES = {"anon": "100/minute", "user": "2/minute"}
    first, second = user_factory(), user_factory()
    api_client.force_authenticate(first)
    for _ in range(3):
        api_client.get("/api/auth/me/")
    api_client.force_authenticate(second)
    assert api_client.get("/api/auth/me/").status_code == 200
