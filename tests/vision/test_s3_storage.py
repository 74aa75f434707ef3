"""MEDIA_STORAGE=s3 against the S3-compatible server of scripts/test.sh (moto on loopback): uploads
land in the bucket encrypted (AES256) under their prefix, downloads go through the owner check
(streamed, or a presigned redirect), deleting a document deletes its objects, and an unreachable
bucket is a transient failure. The bucket is looked at with a plain boto3 client."""

from __future__ import annotations

import socket

import httpx
import pytest
from botocore.config import Config
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from accounts.scope import scope_for
from tests.vision import files
from tests.vision.s3 import bucket as bucket_name
from tests.vision.s3 import object_exists, object_keys, s3_client, use_s3
from vision.faults import is_transient
from vision.media import media_delete, media_read
from vision.models import Document
from vision.services.documents import document_delete, document_files, document_upload

pytestmark = pytest.mark.django_db


def _post(api_client, name: str, data: bytes):
    return api_client.post("/api/documents", {"file": SimpleUploadedFile(name, data)}, format="multipart")


def _pdf() -> bytes:
    return files.pdf_bytes(pages=2, size_pt=(200, 150))


def test_an_api_upload_lands_in_the_bucket_encrypted(s3_media, api_client, user_factory):
    """GIVEN MEDIA_STORAGE=s3 WHEN a two-page PDF is uploaded through /api/documents THEN the
    original and both page PNGs are objects in the bucket, each stored with SSE AES256, and
    nothing is written to the local media folder."""
    api_client.force_authenticate(user_factory())

    response = _post(api_client, "scan.pdf", _pdf())

    assert response.status_code == 201, response.content
    document = Document.objects.get(pk=response.json()["id"])
    paths = document_files(document)
    assert len(paths) == 3 and all(
        path.startswith(f"org-{document.organization_id}/uploads/") for path in paths
    )
    client = s3_client()
    for path in paths:
        head = client.head_object(Bucket=bucket_name(), Key=path)
        assert head["ServerSideEncryption"] == "AES256", path
    page = document.pages.get(number=1)
    stored = client.get_object(Bucket=bucket_name(), Key=page.file)["Body"].read()
    assert stored.startswith(b"\x89PNG") and media_read(page.file) == stored
    assert not s3_media.MEDIA_ROOT.exists()


def test_an_organisations_files_are_under_its_prefix(s3_media, user_factory):
    """Every object of a document is under its organisation's prefix `org-<id>/uploads/`."""
    user = user_factory()
    scope = scope_for(user)
    prefix = f"org-{scope.organization.pk}"

    document = document_upload(scope=scope, data=files.image_bytes("TIFF"), filename="a.tiff").document

    assert set(document_files(document)) <= object_keys(f"{prefix}/")
    assert all(path.startswith(f"{prefix}/uploads/") for path in document_files(document))


def test_page_images_are_read_through_the_owner_check(s3_media, user_factory):
    """GIVEN a document stored in the bucket WHEN its owner asks for a page image and the
    upload THEN both are streamed with the sandboxing CSP; another user gets 404."""
    owner = user_factory()
    document = document_upload(scope=scope_for(owner), data=_pdf(), filename="scan.pdf").document
    owner_client, stranger = Client(), Client()
    owner_client.force_login(owner)
    stranger.force_login(user_factory())

    page = owner_client.get(f"/documents/{document.pk}/pages/1/")
    original = owner_client.get(f"/documents/{document.pk}/original/")

    assert page.status_code == 200 and page["Content-Type"] == "image/png"
    assert b"".join(page.streaming_content) == media_read(document.pages.get(number=1).file)
    assert "sandbox" in page["Content-Security-Policy"]
    assert original.status_code == 200 and original["Content-Type"] == "application/pdf"
    assert b"".join(original.streaming_content) == media_read(document.file)
    assert stranger.get(f"/documents/{document.pk}/pages/1/").status_code == 404
    assert stranger.get(f"/documents/{document.pk}/original/").status_code == 404


def test_presigned_downloads_redirect_to_a_short_lived_url(settings, tmp_path, user_factory):
    """With MEDIA_PRESIGNED_SECONDS the owner is redirected to a presigned URL of that TTL that
    serves the object from the bucket; another user still gets 404 and no URL."""
    settings.MEDIA_ROOT = tmp_path / "no-media-here"
    use_s3(settings, presigned_seconds=60)
    owner = user_factory()
    document = document_upload(scope=scope_for(owner), data=_pdf(), filename="scan.pdf").document
    owner_client, stranger = Client(), Client()
    owner_client.force_login(owner)
    stranger.force_login(user_factory())

    response = owner_client.get(f"/documents/{document.pk}/pages/1/")

    assert response.status_code == 302
    url = response["Location"]
    assert url.startswith(settings.STORAGES["default"]["OPTIONS"]["endpoint_url"])
    assert "X-Amz-Expires=60" in url and "X-Amz-Signature=" in url
    fetched = httpx.get(url, timeout=10)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert fetched.content == media_read(document.pages.get(number=1).file)
    denied = stranger.get(f"/documents/{document.pk}/pages/1/")
    assert denied.status_code == 404 and "Location" not in denied


def test_deleting_a_document_deletes_its_objects(
    s3_media, api_client, user_factory, django_capture_on_commit_callbacks
):
    """GIVEN a document in the bucket WHEN another user deletes it THEN 404 and its objects stay;
    WHEN its owner does THEN 204, the rows are gone and, after the commit, its objects too."""
    owner = user_factory()
    document = document_upload(scope=scope_for(owner), data=_pdf(), filename="scan.pdf").document
    paths = document_files(document)
    assert all(object_exists(path) for path in paths)

    api_client.force_authenticate(user_factory())
    with django_capture_on_commit_callbacks(execute=True):
        refused = api_client.delete(f"/api/documents/{document.pk}")
    assert refused.status_code == 404
    assert all(object_exists(path) for path in paths)

    api_client.force_authenticate(owner)
    with django_capture_on_commit_callbacks(execute=True):
        deleted = api_client.delete(f"/api/documents/{document.pk}")

    assert deleted.status_code == 204
    assert not Document.objects.filter(pk=document.pk).exists()
    assert not any(object_exists(path) for path in paths)
    assert api_client.delete(f"/api/documents/{document.pk}").status_code == 404
    media_delete(paths)  # files already gone: no error


def test_a_rolled_back_delete_keeps_the_objects(s3_media, user_factory, django_capture_on_commit_callbacks):
    from django.db import transaction

    document = document_upload(
        scope=scope_for(user_factory()), data=files.image_bytes("TIFF"), filename="a.tiff"
    ).document
    paths, document_id = document_files(document), document.pk

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        document_delete(document=document)
        raise RuntimeError("the surrounding work failed")

    assert Document.objects.filter(pk=document_id).exists()
    assert all(object_exists(path) for path in paths)


def test_an_unreachable_bucket_is_a_transient_failure(settings, tmp_path):
    """An endpoint nobody listens on: reading raises botocore's connection error, which the run
    loop counts as a service blip (the job runs again), not the job's failure."""
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    use_s3(settings, endpoint_url=f"http://127.0.0.1:{port}")
    settings.STORAGES["default"]["OPTIONS"]["client_config"] = Config(
        retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1, read_timeout=1
    )
    settings.STORAGES = dict(settings.STORAGES)  # tell Django the storages changed

    with pytest.raises(Exception) as raised:  # noqa: PT011 (which class is the point of the test)
        media_read("uploads/00/missing/page-0001.png")

    assert is_transient(raised.value), repr(raised.value)
    assert storages["default"].endpoint_url.endswith(str(port))
