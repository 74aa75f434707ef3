"""Browser tests: Debian's headless Chromium driven by Playwright against the live uvicorn server
(the `live_api` fixture, shared with the /v1 tests) in front of the real Redis and test worker.

No browser is downloaded: Playwright launches /usr/bin/chromium (scripts/test.sh installs it).
Screenshots of the main pages go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.vision.openai.conftest import LiveServer, live_api, ready_worker  # noqa: F401  (shared fixtures)

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google services, which here
# only floods the log with refused connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def serialized_db_contents(django_db_setup, django_db_blocker) -> dict[str, str]:
    """What the test database held after its migrations (role groups, permissions), as
    `serialized_rollback` restores it, read before Playwright starts (see `portal_user`)."""
    from django.db import connections

    with django_db_blocker.unblock():
        return {
            alias: connections[alias]._test_serialized_contents
            for alias in connections
            if getattr(connections[alias], "_test_serialized_contents", None)
        }


@pytest.fixture(scope="module")
def browser(serialized_db_contents, monkeypatch_module):
    """Module-scoped: Playwright's sync API keeps an event loop running in this thread while it
    lives, which later tests calling asyncio.run() must not meet."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does)")
    # With that loop running, Django refuses the tests' own (sync) ORM calls unless told that
    # this thread's sync code is fine.
    monkeypatch_module.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture
def new_page(browser, live_api) -> Iterator[Callable]:  # noqa: F811
    """→ new_page(locale="en-US", mobile=False): a page in a fresh context (own cookies) whose
    relative URLs go to the live server. Confirmations are accepted; any other JS dialog (an XSS
    alert) fails the test."""
    contexts = []
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        if dialog.type == "confirm":  # the portal's own "Revoke this key?" questions
            dialog.accept()
        else:
            dialogs.append(dialog.message)
            dialog.dismiss()

    def make(*, locale: str = "en-US", mobile: bool = False):
        viewport = {"width": 390, "height": 844} if mobile else {"width": 1360, "height": 900}
        context = browser.new_context(base_url=live_api.url, locale=locale, viewport=viewport)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", on_dialog)
        return page

    yield make
    for context in contexts:
        context.close()
    assert not dialogs, f"a page opened a JS dialog (script ran): {dialogs}"


@pytest.fixture
def portal_user(transactional_db, django_db_serialized_rollback, serialized_db_contents) -> Callable:
    """→ make(role) -> user, committed so the live server sees it; password PASSWORD.

    Playwright's sync API runs its event loop in a greenlet with its own context, so once it has
    started, Django's (context-local) connection here is a new object without the serialized
    contents that `serialized_rollback` restores after the previous test's flush. They are put
    back on it, and restored now if this test started from an empty database."""
    from django.contrib.auth.models import Group
    from django.db import connections

    from accounts.roles import Role
    from accounts.services import user_create

    for alias, contents in serialized_db_contents.items():
        connection = connections[alias]
        if not getattr(connection, "_test_serialized_contents", None):
            connection._test_serialized_contents = contents
    if not Group.objects.exists():
        connections["default"].creation.deserialize_db_from_string(serialized_db_contents["default"])

    def make(role: Role = Role.MEMBER, name: str = "user", organization=None):
        """With `organization`, also a member of it with `role`, acting in it."""
        from tests.conftest import organization_join

        user = user_create(username=f"{name}-{time.monotonic_ns()}", password=PASSWORD, role=role)
        if organization is not None:
            organization_join(user, organization, role)
        return user

    return make


def login(page, user, password: str = PASSWORD) -> None:
    page.goto("/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"^https?://[^/]+/$"))


def screenshot(page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)
