"""Forged credentials, IDOR on every object endpoint (URL patterns enumerated, so a new endpoint
is covered or makes this test fail), CSRF on every portal form, stored XSS through file names and
answers."""

from __future__ import annotations

import re
from datetime import timedelta

import jwt
import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.scope import scope_for
from tests.security.conftest import Refusal
from tests.vision import files

pytestmark = pytest.mark.django_db

PROTECTED = ["/api/documents", "/api/jobs", "/api/auth/me/", "/v1/models"]


def _access_token(user) -> str:
    from rest_framework_simplejwt.tokens import AccessToken

    return str(AccessToken.for_user(user))


def _forged(user, kind: str) -> str:
    from django.conf import settings

    token = _access_token(user)
    claims = jwt.decode(token, settings.SECRET_KEY, algorithms=["HS256"])
    if kind == "alg-none":
        return jwt.encode(claims, key="", algorithm="none")
    if kind == "wrong-key":
        return jwt.encode(claims, "not-the-secret-key-but-long-enough-for-hs256", algorithm="HS256")
    if kind == "expired":
        claims["exp"] = int((__import__("datetime").datetime.now() - timedelta(hours=1)).timestamp())
        return jwt.encode(claims, settings.SECRET_KEY, algorithm="HS256")
    if kind == "tampered":
        header, payload, signature = token.split(".")
        other = jwt.utils.base64url_encode(
            __import__("json").dumps({**claims, "user_id": str(int(claims["user_id"]) + 1)}).encode()
        ).decode()
        return f"{header}.{other}.{signature}"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["alg-none", "wrong-key", "expired", "tampered"])
@pytest.mark.parametrize("path", PROTECTED)
def test_forged_jwt_is_401(user_factory, media_root, kind, path):
    user = user_factory()
    with Refusal(media_root) as check:
        response = Client(HTTP_AUTHORIZATION=f"Bearer {_forged(user, kind)}").get(path)
        check(response, 401, openai=path.startswith("/v1"))


@pytest.mark.parametrize("path", PROTECTED)
def test_revoked_api_key_is_401(member, media_root, path):
    from accounts.models import ApiKey
    from accounts.services import api_key_revoke

    assert member.client().get(path).status_code == 200
    api_key_revoke(scope=scope_for(member.user), key_id=ApiKey.objects.get(user=member.user).pk)
    with Refusal(media_root) as check:
        check(member.client().get(path), 401, openai=path.startswith("/v1"))


# --- IDOR ----------------------------------------------------------------------------------------

_PARAM = re.compile(r"<(?:(?P<conv>\w+):)?(?P<name>\w+)>")
# URL parameters that are not object ids of a user (nothing to steal): models, page numbers, and
# document types (one shared set every member reads; that only admins change them is tested in
# tests/vision/test_api_document_types.py).
# `token`: a share link is opened without an account by design; its token is the right to see it
# (tests/vision/test_share_links.py: tampered, expired and revoked tokens are 404).
_NOT_OBJECTS = {"model_id", "page", "slug", "number", "token"}


def _routes(patterns=None, prefix: str = ""):
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if route.startswith("admin/"):
                continue  # staff only; Django's own permission checks
            yield from _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route


def _owned_objects(owner) -> dict[str, int]:
    """One object of each kind, owned by `owner`, by URL parameter name."""
    from accounts.services import api_key_create
    from vision.models import Batch, Conversation, Extraction, Job
    from vision.services.documents import document_upload

    document = document_upload(
        scope=scope_for(owner), data=files.image_bytes("PNG"), filename="secret.png"
    ).document
    batch = Batch.objects.create(organization=scope_for(owner).organization, owner=owner, task="caption")
    job = Job.objects.create(
        organization=scope_for(owner).organization,
        owner=owner,
        batch=batch,
        document=document,
        task="caption",
        max_tokens=4,
    )
    conversation = Conversation.objects.create(
        organization=scope_for(owner).organization, owner=owner, key="k" * 64, model="qwen3-vl-2b"
    )
    extraction = Extraction.objects.create(
        organization_id=document.organization_id, document=document, job=job
    )
    key = api_key_create(scope=scope_for(owner), name="victim")
    from datetime import timedelta

    from vision.services.sharing import share_link_create

    link, _ = share_link_create(
        scope=scope_for(owner), document=document, expires_in=timedelta(days=1), include_extraction=True
    )
    return {
        "link_id": link.pk,
        "document_id": document.pk,
        "job_id": job.pk,
        "batch_id": batch.pk,
        "conversation_id": conversation.pk,
        "extraction_id": extraction.pk,
        "key_id": key.api_key.pk,
        "id": key.api_key.pk,
        "organization_id": scope_for(owner).organization.pk,
        "user_id": owner.pk,
    }


def test_every_object_endpoint_hides_other_users_objects(user_factory, member, media_root):
    """GIVEN user A's document, job, batch, conversation, extraction and API key WHEN user B asks
    for them on every URL pattern that takes an object id (GET, POST, PUT, PATCH, DELETE) THEN B
    gets 404 (or 403/405), never A's data, and A's objects are unchanged afterwards."""
    from accounts.models import ApiKey
    from vision.models import Batch, Conversation, Document, Extraction, Job, ShareLink

    victim = user_factory()
    ids = _owned_objects(victim)

    def state() -> dict:
        return {
            "documents": Document.objects.filter(owner=victim).count(),
            "job": Job.objects.get(pk=ids["job_id"]).status,
            "batch": Batch.objects.filter(pk=ids["batch_id"]).exists(),
            "conversation": Conversation.objects.filter(pk=ids["conversation_id"]).exists(),
            "extraction": Extraction.objects.get(pk=ids["extraction_id"]).status,
            "keys": ApiKey.objects.filter(user=victim, revoked_at__isnull=True).count(),
            "share_links": ShareLink.objects.filter(pk=ids["link_id"], revoked_at__isnull=True).count(),
        }

    before = state()
    api = member.client()
    portal = Client()
    portal.force_login(member.user)
    checked = []
    for route in _routes():
        params = {m["name"]: m["conv"] for m in _PARAM.finditer(route)}
        objects = [name for name in params if name not in _NOT_OBJECTS]
        if not objects:
            continue
        unknown = [name for name in objects if name not in ids]
        assert not unknown, f"new object endpoint {route}: add its object to _owned_objects ({unknown})"
        path = "/" + _PARAM.sub(lambda m: str(ids.get(m["name"], 1)), route)
        client = api if path.startswith(("/api/", "/v1/")) else portal
        for method in ("get", "post", "put", "patch", "delete"):
            response = getattr(client, method)(path)
            allowed = (403, 404, 405) if client is api else (302, 403, 404, 405)  # portal: back to a list
            assert response.status_code in allowed, (method, path, response.status_code)
            if response.status_code == 302:
                assert not response["Location"].endswith(path), (method, path)
            assert b"secret.png" not in response.content
            checked.append(f"{method.upper()} {path}")
    assert len(checked) >= 5 * 12, checked  # documents, jobs, batches, conversations, keys, portal, review
    after = state()
    assert after == before
    print(f"\n[security] IDOR: {len(checked)} requests on {len(checked) // 5} object URLs, all refused")


# --- CSRF ----------------------------------------------------------------------------------------


def test_every_portal_form_refuses_a_post_without_a_csrf_token(member):
    """Every non-API route, POSTed by a logged-in user without the CSRF token, is 403: no portal
    form (upload, keys, revoke, chat, review actions, language) is csrf_exempt."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(member.user)
    checked = []
    for route in _routes():
        if route.startswith(("api/", "v1/")) or route in ("healthz", "readyz"):
            continue
        path = "/" + _PARAM.sub("1", route)
        response = client.post(path, {"name": "x", "action": "approve"})
        assert response.status_code == 403, (path, response.status_code)
        checked.append(path)
    assert "/upload/" in checked and "/keys/" in checked and "/chat/stream/" in checked
    print(f"\n[security] CSRF: {len(checked)} portal routes refuse a POST without the token")


# --- stored XSS ----------------------------------------------------------------------------------

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
FILE_XSS = "<img src=x onerror=alert(1)><svg onload=alert(2)>"  # a file name cannot hold "/"


def test_file_names_and_answers_are_escaped_in_the_portal(member):
    """A file name and a model answer carrying markup are shown as text on every page that shows
    them (job list, job page, batch page, dashboard), never as live markup."""
    from vision.models import Batch, Job
    from vision.services.documents import document_upload

    user = member.user
    document = document_upload(
        scope=scope_for(user), data=files.image_bytes("PNG"), filename=f"{FILE_XSS}.png"
    ).document
    batch = Batch.objects.create(organization=scope_for(user).organization, owner=user, task="caption")
    job = Job.objects.create(
        organization=scope_for(user).organization,
        owner=user,
        batch=batch,
        document=document,
        task="caption",
        max_tokens=4,
        status="succeeded",
        result_text=XSS,
        error="",
    )
    client = Client()
    client.force_login(user)
    for path in ("/", "/jobs/", f"/jobs/{job.pk}/", "/batches/", f"/batches/{batch.pk}/"):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        assert "<script>alert" not in html and "<img src=x onerror" not in html, path
        assert "<svg onload" not in html, path
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "&lt;script&gt;alert" in page


def test_file_names_and_answers_are_json_strings_in_the_api(member):
    """The API returns them as JSON strings with a JSON content type and nosniff: a browser never
    renders them as HTML."""
    from vision.models import Job
    from vision.services.documents import document_upload

    document = document_upload(
        scope=scope_for(member.user), data=files.image_bytes("PNG"), filename=f"{FILE_XSS}.png"
    ).document
    job = Job.objects.create(
        organization=scope_for(member.user).organization,
        owner=member.user,
        document=document,
        task="caption",
        max_tokens=4,
        status="succeeded",
        result_text=XSS,
    )
    response = member.client().get(f"/api/jobs/{job.pk}")
    assert response["Content-Type"].startswith("application/json")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.json()["result"]["text"] == XSS
