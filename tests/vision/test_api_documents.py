"""/api/documents over HTTP: 201 then 200 for the same bytes, rejections as 4xx naming the rule."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.vision import files
from vision.models import Document

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _post(api_client, name: str, data: bytes):
    return api_client.post("/api/documents", {"file": SimpleUploadedFile(name, data)}, format="multipart")


def test_upload_then_duplicate(api_client, user_factory):
    api_client.force_authenticate(user_factory())
    data = files.image_bytes("JPEG")

    first = _post(api_client, "a.jpg", data)
    second = _post(api_client, "b.jpg", data)

    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    body = first.json()
    assert body["content_type"] == "image/jpeg" and body["pages"] == [
        {"number": 1, "width": 64, "height": 48}
    ]
    assert "file" not in body  # the storage path is never shown
    assert api_client.get("/api/documents").json()["count"] == 1


@pytest.mark.parametrize(
    ("name", "data", "status", "rule"),
    [
        ("empty.png", b"", 400, "file_empty"),
        ("page.png", files.HTML_AS_PNG, 415, "type_unsupported"),
        ("bomb.png", files.bomb_png(), 422, "image_too_many_pixels"),
        ("cut.jpg", files.noisy_jpeg()[:2000], 422, "image_corrupt"),
    ],
)
def test_rejections_are_4xx_naming_the_rule(api_client, user_factory, media_root, name, data, status, rule):
    api_client.force_authenticate(user_factory())

    response = _post(api_client, name, data)

    assert response.status_code == status, response.content
    assert response.json()["code"] == rule and response.json()["detail"]
    assert Document.objects.count() == 0
    assert not [p for p in media_root.rglob("*") if p.is_file()]


def test_oversized_is_413(api_client, user_factory, settings):
    settings.UPLOAD_MAX_BYTES = 500
    api_client.force_authenticate(user_factory())
    response = _post(api_client, "big.png", files.noisy_jpeg())
    assert response.status_code == 413 and response.json()["code"] == "file_too_large"


def test_path_traversal_name_is_reduced_to_a_plain_name(api_client, user_factory, media_root):
    """Django's multipart parser keeps only the last path component; the stored file has a random
    name under the organisation's MEDIA_ROOT/org-<id>/uploads whatever the client sent."""
    user = user_factory()
    api_client.force_authenticate(user)

    response = _post(api_client, "../../../../tmp/evil.png", files.image_bytes("PNG"))

    assert response.status_code == 201
    assert response.json()["original_name"] == "evil.png"
    stored = [p for p in media_root.rglob("*") if p.is_file()]
    uploads = media_root / f"org-{user.active_organization_id}" / "uploads"
    assert stored and all(p.is_relative_to(uploads) and "evil" not in str(p) for p in stored)
