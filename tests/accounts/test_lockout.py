import pytest

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _three_attempts(settings):
    settings.LOGIN_LOCKOUT_ATTEMPTS = 3
    settings.LOGIN_LOCKOUT_SECONDS = 120


def _jwt(api_client, username: str, password: str, ip: str = "10.0.0.1"):
    return api_client.post(
        "/api/auth/token/", {"username": username, "password": password}, format="json", REMOTE_ADDR=ip
    )


def test_jwt_obtain_locks_after_repeated_failures(api_client, user_factory):
    """GIVEN 3 wrong passwords THEN the third answers 429 and even the right password is refused."""
    user = user_factory()

    statuses = [_jwt(api_client, user.username, "wrong").status_code for _ in range(3)]
    locked = _jwt(api_client, user.username, PASSWORD)

    assert statuses == [401, 401, 429]
    assert locked.status_code == 429
    assert "Too many failed login attempts" in locked.json()["detail"]
    assert 0 < int(locked["Retry-After"]) <= 121


def test_lockout_is_per_client_ip(api_client, user_factory):
    user = user_factory()
    for _ in range(3):
        _jwt(api_client, user.username, "wrong", ip="10.0.0.1")
    assert _jwt(api_client, user.username, PASSWORD, ip="10.0.0.2").status_code == 200


def test_success_resets_the_failure_count(api_client, user_factory):
    user = user_factory()
    for _ in range(2):
        _jwt(api_client, user.username, "wrong")
    assert _jwt(api_client, user.username, PASSWORD).status_code == 200
    assert [_jwt(api_client, user.username, "wrong").status_code for _ in range(2)] == [401, 401]


def test_portal_login_locks_after_repeated_failures(client, user_factory):
    user = user_factory()
    responses = [client.post("/login/", {"username": user.username, "password": "wrong"}) for _ in range(3)]
    locked = client.post("/login/", {"username": user.username, "password": PASSWORD})

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert locked.status_code == 429
    assert b"Too many failed login attempts" in locked.content
    assert "_auth_user_id" not in client.session


def test_portal_and_api_share_the_lockout(api_client, client, user_factory):
    user = user_factory()
    for _ in range(3):
        client.post("/login/", {"username": user.username, "password": "wrong"}, REMOTE_ADDR="10.0.0.1")
    assert _jwt(api_client, user.username, PASSWORD, ip="10.0.0.1").status_code == 429
