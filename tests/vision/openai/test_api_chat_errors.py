"""Every failure on /v1 is an OpenAI error object, against the live server (hostile inputs:
bad parameters, bad URLs, oversized and malformed bodies, too many images, no auth)."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.vision.openai.conftest import SERVER_ENV

pytestmark = pytest.mark.integration

OK_MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def api(live_api, ready_worker, make_api_user):
    user, key = make_api_user()
    client = openai.OpenAI(base_url=f"{live_api.url}/v1", api_key=key, max_retries=0, timeout=60)
    http = httpx.Client(
        base_url=f"{live_api.url}/v1/", headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    yield user, client, http
    http.close()


def _assert_error(
    response: httpx.Response, status: int, *, code: str | None = None, param: str | None = None
) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error


def _image_message(url) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "?"}],
        }
    ]


def test_unknown_model_is_404_model_not_found(api):
    _, client, _ = api
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=OK_MESSAGES)
    assert caught.value.body["code"] == "model_not_found"
    assert caught.value.body["param"] == "model"


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"max_tokens": 10**12}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"max_completion_tokens": 10**9}, "max_completion_tokens"),
        ({"n": 2}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": -2}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"seed": "x"}, "seed"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ],
)
def test_bad_parameters_are_400_naming_the_param(api, extra, param):
    _, _, http = api
    body = {"model": "qwen3-vl-2b", "messages": OK_MESSAGES, **extra}
    error = _assert_error(http.post("chat/completions", json=body), 400, param=param)
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "gopher://127.0.0.1:6379/_INFO",
        "http://127.0.0.1:6379/",
        "http://localhost/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",  # decimal 127.0.0.1
        "http://0177.0.0.1/",  # octal 127.0.0.1
        "http://0x7f.1/",  # hex, short form
        "http://10.0.0.1/",
        "http://0.0.0.0:8000/",
        "http://user:pw@example.com/",
        "data:image/png,notbase64",
        "data:image/png;base64,!!!",
    ],
)
def test_refused_image_urls_are_400_and_store_nothing(api, url):
    from vision.models import Conversation, Document

    user, _, http = api
    body = {"model": "qwen3-vl-2b", "messages": _image_message(url)}
    _assert_error(http.post("chat/completions", json=body), 400, code="invalid_image_url")
    assert not Document.objects.filter(owner=user).exists()
    assert not Conversation.objects.filter(owner=user).exists()


def test_a_non_image_data_url_is_refused_by_the_upload_checks(api):
    """OpenAI answers an unusable image with 400 invalid_request_error (the upload API's 415 / 422
    would reach SDK users as a generic APIStatusError); `code` keeps the upload rule."""
    user, _, http = api
    html = base64.b64encode(b"<html><script>alert(1)</script></html>").decode()
    body = {"model": "qwen3-vl-2b", "messages": _image_message(f"data:image/png;base64,{html}")}
    error = _assert_error(http.post("chat/completions", json=body), 400, code="type_unsupported")
    assert error["type"] == "invalid_request_error"


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"<html><script>alert(1)</script></html>", "type_unsupported"),
        (_png_bytes()[:60], "image_corrupt"),  # a real PNG's header, cut off
        (b"%PDF-1.4 not really", None),  # not an image: refused whatever the PDF checks say
    ],
    ids=["html", "truncated-png", "pdf"],
)
def test_invalid_data_url_images_are_bad_request_errors_for_the_sdk(api, payload, code):
    from vision.models import Document

    user, client, _ = api
    url = "data:image/png;base64," + base64.b64encode(payload).decode()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="qwen3-vl-2b", messages=_image_message(url), max_tokens=1)
    assert caught.value.status_code == 400
    assert caught.value.body["type"] == "invalid_request_error"
    if code is not None:
        assert caught.value.body["code"] == code
    assert not Document.objects.filter(owner=user).exists()


def test_too_many_images_are_refused_before_any_is_stored(api):
    from vision.models import Document

    user, _, http = api
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    content = [{"type": "image_url", "image_url": {"url": url}}] * 2000
    body = {"model": "qwen3-vl-2b", "messages": [{"role": "user", "content": content}]}
    _assert_error(http.post("chat/completions", json=body), 400, code="too_many_images")
    assert not Document.objects.filter(owner=user).exists()


def test_oversized_body_is_413(api):
    _, _, http = api
    limit = int(SERVER_ENV["OPENAI_MAX_BODY_BYTES"])
    body = {"model": "qwen3-vl-2b", "messages": [{"role": "user", "content": "x" * (limit + 10)}]}
    _assert_error(http.post("chat/completions", json=body), 413, code="request_too_large")


@pytest.mark.parametrize(
    "raw, code",
    [
        (b'{"model": "qwen3-vl-2b", "messages": [', "invalid_json"),
        (
            b'{"model": "qwen3-vl-2b", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
            "invalid_encoding",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
        (b'"just a string"', "invalid_json"),
        (b"", "invalid_json"),
    ],
)
def test_malformed_bodies_are_400(api, raw, code):
    _, _, http = api
    response = http.post("chat/completions", content=raw, headers={"Content-Type": "application/json"})
    _assert_error(response, 400, code=code)


def test_unauthenticated_and_bad_keys_are_401_error_objects(live_api):
    response = httpx.post(
        f"{live_api.url}/v1/chat/completions", json={"model": "qwen3-vl-2b", "messages": OK_MESSAGES}
    )
    error = _assert_error(response, 401, code="missing_api_key")
    assert error["type"] == "authentication_error"
    client = openai.OpenAI(base_url=f"{live_api.url}/v1", api_key="dp_not-a-real-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    _assert_error(
        httpx.get(f"{live_api.url}/v1/models", headers={"Authorization": "Bearer garbage.jwt.value"}), 401
    )


def test_unknown_paths_and_methods_are_error_objects(api, live_api):
    _, _, http = api
    _assert_error(http.get("no/such/endpoint"), 404)
    _assert_error(httpx.get(f"{live_api.url}/v1"), 404)
    response = http.get("chat/completions")
    _assert_error(response, 405, code="method_not_allowed")
    assert response.headers["allow"] == "POST"
    _assert_error(http.delete("models"), 405)
    _assert_error(http.get("models/gpt-4"), 404, code="model_not_found")
