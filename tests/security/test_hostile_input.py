"""Hostile uploads and API bodies: each is a clear 4xx naming the rule (an OpenAI
error object on /v1), stores nothing (rows and files counted before and after) and leaves the
service healthy. In-process (Django test client) so the suite runs in seconds; the live-server
versions of the /v1 cases are in tests/vision/openai/test_api_chat_errors.py and the SSRF fetcher
(redirects to private addresses with real local servers) in tests/vision/openai/test_fetch.py."""

from __future__ import annotations

import base64
import json

import pytest

from tests.security.conftest import Refusal
from tests.vision import files

pytestmark = pytest.mark.django_db

PNG = files.image_bytes("PNG", (32, 32), "red")
JS_PDF = b"""%PDF-1.4
1 0 obj << /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >> endobj
2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj
3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >> endobj
4 0 obj << /S /JavaScript /JS (app.alert('pwned');) >> endobj
trailer << /Root 1 0 R >>
%%EOF"""


def _page_bomb_pdf(pages: int) -> bytes:
    """A few KB declaring `pages` pages: one page object listed `pages` times."""
    kids = b" ".join([b"3 0 R"] * pages)
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        + b"2 0 obj << /Type /Pages /Kids ["
        + kids
        + b"] /Count "
        + str(pages).encode()
        + b" >> endobj\n"
        + b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >> endobj\n"
        + b"trailer << /Root 1 0 R >>\n%%EOF"
    )


def _truncated_jpeg() -> bytes:
    data = files.noisy_jpeg((128, 128))
    return data[: len(data) // 2]


UPLOADS = {
    "zero-bytes": ("empty.png", b"", 400, "file_empty"),
    "decompression-bomb-png": ("bomb.png", files.bomb_png(), 422, "image_too_many_pixels"),
    "truncated-jpeg": ("cut.jpg", _truncated_jpeg(), 422, "image_corrupt"),
    "html-renamed-png": ("page.png", files.HTML_AS_PNG, 415, "type_unsupported"),
    "svg-renamed-png": ("logo.png", files.SVG_AS_PNG, 415, "type_unsupported"),
    "polyglot-png-html": ("poly.png", PNG + b"<html><script>alert(1)</script></html>", 422, "active_content"),
    "polyglot-png-zip-script": (
        "poly.png",
        PNG + b"PK\x03\x04" + b"\0" * 26 + b"<script>x</script>",
        422,
        "active_content",
    ),
    "polyglot-pdf-html": (
        "poly.pdf",
        files.pdf_bytes(1) + b"<!DOCTYPE html><svg onload=alert(1)>",
        422,
        "active_content",
    ),
    "pdf-with-javascript": ("js.pdf", JS_PDF, 422, "active_content"),
    "pdf-page-count-bomb": ("pages.pdf", _page_bomb_pdf(100_000), 422, "too_many_pages"),
    "pdf-just-over-the-page-limit": ("pages.pdf", files.pdf_bytes(21, (100, 100)), 422, "too_many_pages"),
    "gif-javascript-polyglot": (
        "x.png",
        b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00;*/=alert(1)//",
        415,
        "type_unsupported",
    ),
}


@pytest.mark.parametrize("case", UPLOADS, ids=list(UPLOADS))
def test_hostile_upload_to_documents(member, media_root, settings, case):
    settings.UPLOAD_PDF_MAX_PAGES = 20
    name, data, status, code = UPLOADS[case]
    with Refusal(media_root) as check:
        response = member.client().post("/api/documents", {"file": _file(name, data)})
        check(response, status, code=code)


@pytest.mark.parametrize("case", ["decompression-bomb-png", "polyglot-png-html", "pdf-with-javascript"])
def test_hostile_upload_as_a_job_creates_no_job(member, media_root, case):
    name, data, status, code = UPLOADS[case]
    with Refusal(media_root) as check:
        response = member.client().post("/api/jobs", {"task": "caption", "file": _file(name, data)})
        check(response, status, code=code)


def test_hostile_file_in_a_batch_refuses_the_whole_batch(member, media_root):
    with Refusal(media_root) as check:
        response = member.client().post(
            "/api/batches",
            {"task": "caption", "files": [_file("ok.png", PNG), _file("bad.png", files.bomb_png())]},
        )
        check(response, 422)


def test_oversized_upload_is_413(member, media_root, settings):
    settings.UPLOAD_MAX_BYTES = 10_000
    with Refusal(media_root) as check:
        response = member.client().post(
            "/api/documents", {"file": _file("big.png", b"\x89PNG" + b"\0" * 20_000)}
        )
        check(response, 413, code="file_too_large")


@pytest.mark.parametrize("name", ["../../../etc/passwd.png", "..\\..\\boot.ini.png", "/etc/cron.d/x.png"])
def test_path_traversal_names_never_leave_the_media_folder(member, media_root, name):
    """Django's multipart parser keeps only the last path component, so the upload is a plain
    file name (stored under a random folder); nothing is written outside MEDIA_ROOT."""
    from vision.models import Document

    response = member.client().post("/api/documents", {"file": _file(name, PNG)})
    assert response.status_code == 201, response.content
    document = Document.objects.get(pk=response.json()["id"])
    assert "/" not in document.original_name and "\\" not in document.original_name
    assert ".." not in document.original_name
    for stored in media_root.rglob("*"):
        assert stored.resolve().is_relative_to(media_root.resolve())


# --- /api JSON bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"task": "chat", "message": "hi", "max_tokens": -5}', "application/json"),
        (b'{"task": "chat", "message": "hi", "max_tokens": 100000000000000000000}', "application/json"),
        (b'{"task": "chat", "message": "' + b"x" * 9000 + b'"}', "application/json"),
        (b"[" * 50_000 + b"]" * 50_000, "application/json"),
        (b'{"task": "chat", "message": "\xff\xfe\xfa"}', "application/json"),
        (b'{"task": "chat", "message": "hi", "pages": [0, -1]}', "application/json"),
    ],
    ids=[
        "negative-max-tokens",
        "huge-max-tokens",
        "overlong-message",
        "deeply-nested",
        "invalid-utf8",
        "bad-pages",
    ],
)
def test_hostile_job_bodies_are_400(member, media_root, body, content_type):
    with Refusal(media_root) as check:
        response = member.client().post("/api/jobs", body, content_type=content_type)
        check(response, 400)


# --- /v1 ----------------------------------------------------------------------------------------


def _chat(member, body, **extra):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return member.client().post("/v1/chat/completions", raw, content_type="application/json", **extra)


def _image(url: str) -> dict:
    return {
        "model": "qwen3-vl-2b",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, "?"][:1]}
        ],
    }


OK = {"model": "qwen3-vl-2b", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{" + b'"a":{' * 20_000 + b"}" * 20_001, 400, None),
        (
            b'{"model": "qwen3-vl-2b", "messages": [{"role": "user", "content": "\xc3\x28"}]}',
            400,
            "invalid_encoding",
        ),
        ({**OK, "max_tokens": -1}, 400, None),
        ({**OK, "max_tokens": 10**12}, 400, None),
        ({**OK, "messages": [{"role": "user", "content": "hi"}] * 5000}, 400, None),
        (
            {
                "model": "qwen3-vl-2b",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {
                                    "url": "data:image/png;base64," + base64.b64encode(PNG).decode()
                                },
                            }
                        ]
                        * 3000,
                    }
                ],
            },
            400,
            None,
        ),
        (b"[1, 2, 3]", 400, None),
    ],
    ids=[
        "deeply-nested",
        "invalid-utf8",
        "negative-max-tokens",
        "huge-max-tokens",
        "thousands-of-messages",
        "thousands-of-images",
        "not-an-object",
    ],
)
def test_hostile_chat_bodies(member, media_root, body, status, code):
    with Refusal(media_root) as check:
        check(_chat(member, body), status, code=code, openai=True)


def test_huge_chat_body_is_413(member, media_root, settings):
    settings.OPENAI_MAX_BODY_BYTES = 64 * 1024
    with Refusal(media_root) as check:
        check(
            _chat(member, {**OK, "messages": [{"role": "user", "content": "x" * 100_000}]}), 413, openai=True
        )


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "http://127.0.0.1:6379/",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[::1]:8000/",
        "http://2130706433/",  # decimal 127.0.0.1
        "http://0177.0.0.1/",  # octal 127.0.0.1
        "http://0x7f000001/",  # hex
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped metadata address
        "http://localhost:6379/",
    ],
)
def test_image_urls_to_local_or_private_targets_are_refused(member, media_root, settings, url):
    settings.OPENAI_IMAGE_URL_FETCH = True  # even with fetching on, these never leave the server
    body = {
        "model": "qwen3-vl-2b",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
    }
    with Refusal(media_root) as check:
        check(_chat(member, body), 400, code="invalid_image_url", openai=True)


def _file(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="image/png")
