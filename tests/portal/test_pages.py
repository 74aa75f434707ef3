"""Portal pages through Django's test client: who may open what, escaping, languages. The
browser tests (test_browser.py) cover the flows; these are the fast checks around them."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.roles import Role
from accounts.scope import scope_for
from tests.vision.files import image_bytes
from vision.services.jobs import UploadedFile, job_submit

pytestmark = pytest.mark.django_db

PAGES = ["/", "/upload/", "/jobs/", "/batches/", "/chat/", "/keys/"]
XSS = "<img src=x onerror=alert(1)>.png"  # no slash: upload names are plain file names


@pytest.fixture
def member_client(user_factory):
    user = user_factory(Role.MEMBER)
    client = Client()
    client.force_login(user)
    client.user = user
    return client


@pytest.mark.parametrize("path", [*PAGES, "/review/"])
def test_pages_need_a_login(client, path) -> None:
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize("path", PAGES)
def test_member_pages_render(member_client, path) -> None:
    response = member_client.get(path)
    assert response.status_code == 200
    assert b"<html" in response.content


def test_review_queue_is_403_for_members_and_open_to_reviewers(member_client, user_factory) -> None:
    refused = member_client.get("/review/")
    assert refused.status_code == 403 and b"Not allowed" in refused.content
    reviewer = Client()
    reviewer.force_login(user_factory(Role.REVIEWER))
    assert reviewer.get("/review/").status_code == 200


def test_file_names_are_escaped_and_other_users_documents_are_hidden(member_client, user_factory) -> None:
    job = job_submit(
        scope=scope_for(member_client.user),
        task="caption",
        options={},
        upload=UploadedFile(name=XSS, data=image_bytes()),
    )
    for path in ("/", "/jobs/", f"/jobs/{job.pk}/"):
        content = member_client.get(path).content.decode()
        assert "&lt;img src=x onerror=alert(1)&gt;.png" in content and XSS not in content
    page = member_client.get(f"/documents/{job.document_id}/pages/1/")
    assert page.status_code == 200 and page["Content-Type"] == "image/png"
    assert "sandbox" in page["Content-Security-Policy"]

    stranger = Client()
    stranger.force_login(user_factory())
    assert stranger.get(f"/jobs/{job.pk}/").status_code == 404
    assert stranger.get(f"/documents/{job.document_id}/pages/1/").status_code == 404
    assert stranger.get(f"/documents/{job.document_id}/original/").status_code == 404


def test_chinese_from_accept_language_and_english_by_default(member_client) -> None:
    zh = member_client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    assert "仪表盘".encode() in zh.content and b'lang="zh-hans"' in zh.content
    en = member_client.get("/", HTTP_ACCEPT_LANGUAGE="en-US")
    assert b"Dashboard" in en.content


def test_language_switcher_sets_the_cookie(member_client) -> None:
    response = member_client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/upload/"})
    assert response.status_code == 302 and response["Location"] == "/upload/"
    assert "把文件拖到这里".encode() in member_client.get("/upload/").content


def test_api_key_is_shown_once(member_client) -> None:
    created = member_client.post("/keys/", {"name": "script"})
    raw = created.context["created"].raw_key
    assert raw.encode() in created.content
    assert raw.encode() not in member_client.get("/keys/").content


def test_chat_stream_needs_login_and_csrf(user_factory) -> None:
    anonymous = Client()
    assert anonymous.post("/chat/stream/", "{}", content_type="application/json").status_code == 401
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user_factory())
    assert strict.post("/chat/stream/", "{}", content_type="application/json").status_code == 403


def test_chat_page_escapes_history(member_client) -> None:
    from vision.services.conversations import TurnMessage, conversation_record_request

    conversation = conversation_record_request(
        scope=scope_for(member_client.user), key="k", model="m", messages=[TurnMessage(role="user", text=XSS)]
    )
    content = member_client.get(f"/chat/{conversation.pk}/").content.decode()
    assert XSS not in content  # json_script writes it as \u003Cimg ...
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in content
