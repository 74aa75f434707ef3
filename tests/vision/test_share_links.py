"""Share links (#27): a signed, expiring, read-only link to one document, opened without an
account, revocable, every open an audit event. Made through /api and the job page; opened at
/share/<token>/ (page images at /share/<token>/pages/<n>)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone

from accounts.roles import Role
from accounts.scope import scope_for
from accounts.services import api_key_create
from tests.vision import files
from vision.media import media_read
from vision.models import Extraction, ExtractionEvent, ExtractionEventAction, Job, JobStatus, ShareLink
from vision.services.documents import document_upload
from vision.services.sharing import TOKEN_SALT, share_link_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def member(user_factory, team):
    return user_factory(Role.MEMBER, organization=team)


@pytest.fixture
def document(media_root, member):
    """A one-page PNG of the team with an extraction whose invoice number is INV-4711."""
    document = document_upload(
        scope=scope_for(member), data=files.image_bytes("PNG", size=(80, 60)), filename="invoice.png"
    ).document
    Extraction.objects.create(
        organization=document.organization,
        document=document,
        fields={"invoice_number": "INV-4711", "total": "99.50"},
        confidence={"invoice_number": 0.9},
    )
    return document


def _token(url: str) -> str:
    return url.rstrip("/").rsplit("/share/", 1)[1]


def _create(api_client, user, document, **body):
    api_client.force_authenticate(user)
    return api_client.post(f"/api/documents/{document.pk}/share-links", body, format="json")


def test_a_link_opens_without_an_account_and_every_open_is_logged(api_client, member, document):
    """GIVEN a member's share link (with the extraction) WHEN an anonymous browser opens it THEN
    the page shows the document's name, its page image and fields, is neither indexed nor leaks
    its URL; the image is the page's bytes; the page view counts (the image does not) and is a
    share_opened event with the IP and user agent."""
    created = _create(api_client, member, document, expires_in_days=3, include_extraction=True)

    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == {"id", "url", "expires_at", "include_extraction"}
    assert body["url"].startswith("http://testserver/share/") and body["include_extraction"] is True
    link = ShareLink.objects.get(pk=body["id"])
    assert timedelta(days=2, hours=23) < link.expires_at - timezone.now() <= timedelta(days=3)
    token = _token(body["url"])
    secret = signing.loads(token, salt=TOKEN_SALT)["s"]
    assert secret not in link.secret_hash and len(link.secret_hash) == 64
    shared = ExtractionEvent.objects.get(action=ExtractionEventAction.SHARED)
    assert shared.document_id == document.pk and shared.actor == member
    assert shared.detail["share_link"] == link.pk and shared.organization_id == document.organization_id

    anonymous = Client(HTTP_USER_AGENT="curl/8 " + "x" * 300)
    page = anonymous.get(f"/share/{token}/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "invoice.png" in html and "INV-4711" in html
    assert f"/share/{token}/pages/1" in html
    assert page["X-Robots-Tag"].startswith("noindex") and page["Referrer-Policy"] == "no-referrer"
    image = anonymous.get(f"/share/{token}/pages/1")
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert b"".join(image.streaming_content) == media_read(document.pages.get(number=1).file)
    assert image["Referrer-Policy"] == "no-referrer"
    assert anonymous.get(f"/share/{token}/pages/2").status_code == 404  # no such page

    link.refresh_from_db()
    assert link.open_count == 1 and link.last_opened_at is not None
    opened = ExtractionEvent.objects.get(action=ExtractionEventAction.SHARE_OPENED)
    assert opened.document_id == document.pk and opened.actor is None
    assert opened.detail["share_link"] == link.pk and opened.detail["ip"] == "127.0.0.1"
    assert opened.detail["user_agent"].startswith("curl/8 ") and len(opened.detail["user_agent"]) == 200

    assert anonymous.get(f"/share/{token}/").status_code == 200
    link.refresh_from_db()
    assert link.open_count == 2


def test_the_list_shows_no_secret(api_client, member, document):
    _create(api_client, member, document)

    listed = api_client.get(f"/api/documents/{document.pk}/share-links")

    assert listed.status_code == 200
    [row] = listed.json()["results"]
    assert "url" not in row and "secret_hash" not in row and "token" not in row
    assert row["document"] == document.pk and row["open_count"] == 0 and row["revoked_at"] is None
    assert row["include_extraction"] is False


def test_without_the_extraction_the_fields_are_hidden(member, document):
    _link, token = share_link_create(scope=scope_for(member), document=document, include_extraction=False)

    page = Client().get(f"/share/{token}/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "invoice.png" in html and "INV-4711" not in html and "99.50" not in html


def test_a_tampered_or_made_up_token_is_404(member, document):
    link, token = share_link_create(scope=scope_for(member), document=document)
    payload, _, signature = token.rpartition(":")
    tampered = payload + ":" + ("A" if signature[-1] != "A" else "B") + signature[1:]
    wrong_secret = signing.dumps({"l": link.pk, "s": "guessed"}, salt=TOKEN_SALT)
    other_salt = signing.dumps({"l": link.pk, "s": "guessed"})
    client = Client()

    pages = [client.get(f"/share/{bad}/") for bad in (tampered, wrong_secret, other_salt, "nonsense")]

    assert [page.status_code for page in pages] == [404, 404, 404, 404]
    # One message, whatever failed (the pages differ only in their masked CSRF tokens).
    assert all("does not exist or is no longer valid" in page.content.decode() for page in pages)
    assert pages[0]["X-Robots-Tag"].startswith("noindex")
    assert client.get(f"/share/{wrong_secret}/pages/1").status_code == 404
    link.refresh_from_db()
    assert link.open_count == 0
    assert not ExtractionEvent.objects.filter(action=ExtractionEventAction.SHARE_OPENED).exists()


def test_an_expired_link_is_404(member, document):
    link, token = share_link_create(scope=scope_for(member), document=document)
    ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = Client()

    assert client.get(f"/share/{token}/").status_code == 404
    assert client.get(f"/share/{token}/pages/1").status_code == 404


def test_a_revoked_link_is_404(api_client, member, document):
    link, token = share_link_create(scope=scope_for(member), document=document)
    client = Client()
    assert client.get(f"/share/{token}/").status_code == 200

    api_client.force_authenticate(member)
    revoked = api_client.delete(f"/api/share-links/{link.pk}")

    assert revoked.status_code == 204
    assert client.get(f"/share/{token}/").status_code == 404
    assert client.get(f"/share/{token}/pages/1").status_code == 404
    event = ExtractionEvent.objects.get(action=ExtractionEventAction.SHARE_REVOKED)
    assert event.actor == member and event.detail == {"share_link": link.pk}
    assert api_client.delete(f"/api/share-links/{link.pk}").status_code == 204  # twice: same end
    assert ExtractionEvent.objects.filter(action=ExtractionEventAction.SHARE_REVOKED).count() == 1


def test_a_deleted_document_takes_its_links(member, document, django_capture_on_commit_callbacks):
    from vision.services.documents import document_delete

    link, token = share_link_create(scope=scope_for(member), document=document)
    with django_capture_on_commit_callbacks(execute=True):
        document_delete(document=document, actor=member)

    assert not ShareLink.objects.filter(pk=link.pk).exists()
    assert Client().get(f"/share/{token}/").status_code == 404


def test_another_organisation_cannot_create_list_or_revoke(api_client, user_factory, member, document):
    link, _token_ = share_link_create(scope=scope_for(member), document=document)
    stranger = user_factory(Role.ADMIN)  # an admin, of another organisation

    assert _create(api_client, stranger, document).status_code == 404
    assert api_client.get(f"/api/documents/{document.pk}/share-links").status_code == 404
    assert api_client.delete(f"/api/share-links/{link.pk}").status_code == 404
    link.refresh_from_db()
    assert link.revoked_at is None and ShareLink.objects.count() == 1


def test_only_the_creator_or_an_admin_revokes(api_client, user_factory, team, member, document):
    link, _ = share_link_create(scope=scope_for(member), document=document)
    colleague = user_factory(Role.MEMBER, organization=team)
    admin = user_factory(Role.ADMIN, organization=team)

    api_client.force_authenticate(colleague)
    assert api_client.delete(f"/api/share-links/{link.pk}").status_code == 403
    api_client.force_authenticate(admin)
    assert api_client.delete(f"/api/share-links/{link.pk}").status_code == 204


def test_a_read_only_key_cannot_share(api_client, member, document):
    key = api_key_create(scope=scope_for(member), name="reader", scopes=["read"]).raw_key
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    refused = api_client.post(f"/api/documents/{document.pk}/share-links", {}, format="json")

    assert refused.status_code == 403
    assert not ShareLink.objects.exists()
    assert api_client.get(f"/api/documents/{document.pk}/share-links").status_code == 200


def test_a_key_with_write_shares(api_client, member, document):
    key = api_key_create(scope=scope_for(member), name="writer").raw_key
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    created = api_client.post(f"/api/documents/{document.pk}/share-links", {}, format="json")

    assert created.status_code == 201
    link = ShareLink.objects.get()
    assert timedelta(days=6, hours=23) < link.expires_at - timezone.now() <= timedelta(days=7)  # the default


@pytest.mark.parametrize("days", [0, 91, "soon"])
def test_the_lifetime_is_bounded(api_client, member, document, days):
    assert _create(api_client, member, document, expires_in_days=days).status_code == 400
    assert not ShareLink.objects.exists()


def test_the_job_page_shares_and_revokes(member, document):
    """The job page's share form makes a link and shows its URL once; the link is listed with a
    revoke button, which ends it."""
    job = Job.objects.create(
        organization=document.organization,
        owner=member,
        document=document,
        task="ocr",
        max_tokens=16,
        status=JobStatus.SUCCEEDED,
    )
    client = Client()
    client.force_login(member)

    page = client.get(f"/jobs/{job.pk}/")
    assert page.status_code == 200 and 'id="share-form"' in page.content.decode()

    created = client.post(f"/jobs/{job.pk}/share/", {"expires_in_days": "2", "include_extraction": "on"})

    assert created.status_code == 200
    html = created.content.decode()
    link = ShareLink.objects.get()
    assert link.include_extraction and link.created_by == member
    start = html.index('id="share-url">') + len('id="share-url">')
    url = html[start : html.index("<", start)]
    assert url.startswith("http://testserver/share/")
    assert Client().get(url.removeprefix("http://testserver")).status_code == 200
    again = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="share-url"' not in again and f'data-link="{link.pk}"' in again  # listed, URL not shown

    revoked = client.post(f"/share-links/{link.pk}/revoke/", {"job": str(job.pk)})

    assert revoked.status_code == 302 and revoked["Location"] == f"/jobs/{job.pk}/"
    link.refresh_from_db()
    assert link.revoked_at is not None
    assert f'data-link="{link.pk}"' not in client.get(f"/jobs/{job.pk}/").content.decode()
    assert Client().get(url.removeprefix("http://testserver")).status_code == 404


def test_the_shared_page_renders_in_chinese(member, document):
    _link, token = share_link_create(scope=scope_for(member), document=document, include_extraction=True)

    page = Client(HTTP_ACCEPT_LANGUAGE="zh-hans").get(f"/share/{token}/")
    gone = Client(HTTP_ACCEPT_LANGUAGE="zh-hans").get("/share/nonsense/")

    assert "只读共享" in page.content.decode()
    assert "此共享链接不存在或已失效" in gone.content.decode()
