import pytest
from django.test import Client

from accounts.roles import Role

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def test_login_with_csrf_then_logout(user_factory):
    """GIVEN the login page WHEN the form is posted with its CSRF token THEN the user is in;
    logging out is a POST with CSRF too."""
    user = user_factory(Role.REVIEWER)
    client = Client(enforce_csrf_checks=True)
    page = client.get("/login/")
    assert page.status_code == 200
    token = client.cookies["csrftoken"].value

    response = client.post(
        "/login/", {"username": user.username, "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    home = client.get("/")
    assert home.status_code == 200
    assert user.username.encode() in home.content and b"reviewer" in home.content

    token = client.cookies["csrftoken"].value
    assert client.post("/logout/", {"csrfmiddlewaretoken": token}).status_code == 302
    assert client.get("/").status_code == 302


def test_login_without_csrf_token_is_refused(user_factory):
    user = user_factory()
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 403


def test_home_requires_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_ensure_admin_creates_admin_once(tmp_path, settings, monkeypatch, capsys):
    from django.core.management import call_command

    from accounts.models import User

    settings.DATA_DIR = tmp_path
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    call_command("ensure_admin")
    call_command("ensure_admin")

    admin = User.objects.get(username="admin")
    password = (tmp_path / "admin_password").read_text().strip()
    assert admin.is_superuser and admin.is_staff and admin.check_password(password)
    assert admin.roles == ["admin"]
    assert (tmp_path / "admin_password").stat().st_mode & 0o777 == 0o600
    assert capsys.readouterr().out.count("created admin account") == 1
