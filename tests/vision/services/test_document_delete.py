"""document_delete and DELETE /api/documents/<id> on local media (MEDIA_STORAGE=local, the default):
the rows go, then after the commit the files and their upload folder; another user's document is
404; deleting again, or files already gone, is no error. The same on S3: tests/vision/test_s3_storage.py."""

from pathlib import Path

import pytest

from accounts.scope import scope_for
from tests.vision import files
from vision import media
from vision.models import Document, DocumentPage
from vision.services.documents import document_delete, document_files, document_upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _stored_files(media_root: Path) -> list[Path]:
    return sorted(p for p in media_root.rglob("*") if p.is_file())


def test_delete_removes_rows_files_and_folder(user_factory, media_root, django_capture_on_commit_callbacks):
    document = document_upload(
        scope=scope_for(user_factory()), data=files.pdf_bytes(2, (200, 150)), filename="a.pdf"
    ).document
    other = document_upload(
        scope=scope_for(user_factory()), data=files.image_bytes("TIFF"), filename="b.tiff"
    ).document
    folder = (media_root / document.file).parent
    assert len(list(folder.iterdir())) == 3  # the PDF and its two page PNGs

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        document_delete(document=document)
        assert folder.is_dir()  # the files wait for the commit

    assert len(callbacks) == 1
    assert not Document.objects.filter(pk=document.pk).exists()
    assert not DocumentPage.objects.filter(document_id=document.pk).exists()
    assert not folder.exists()
    assert not folder.parent.exists() or any(folder.parent.iterdir())  # emptied folders go too
    assert _stored_files(media_root) == [media_root / path for path in document_files(other)]
    assert (media_root / f"org-{other.organization_id}" / "uploads").is_dir()  # the uploads root stays


def test_files_already_gone_are_no_error(user_factory, media_root, django_capture_on_commit_callbacks):
    document = document_upload(
        scope=scope_for(user_factory()), data=files.image_bytes("TIFF"), filename="a.tiff"
    ).document
    paths = document_files(document)
    media.media_delete(paths)

    with django_capture_on_commit_callbacks(execute=True):
        document_delete(document=document)

    media.media_delete(paths)
    assert not Document.objects.filter(pk=document.pk).exists()
    assert _stored_files(media_root) == []


def test_api_delete_is_204_for_the_owner_404_for_others(
    api_client, user_factory, media_root, django_capture_on_commit_callbacks
):
    owner = user_factory()
    document = document_upload(
        scope=scope_for(owner), data=files.image_bytes("TIFF"), filename="a.tiff"
    ).document
    stored = _stored_files(media_root)
    assert stored

    api_client.force_authenticate(user_factory())
    with django_capture_on_commit_callbacks(execute=True):
        assert api_client.delete(f"/api/documents/{document.pk}").status_code == 404
    assert _stored_files(media_root) == stored

    api_client.force_authenticate(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.delete(f"/api/documents/{document.pk}")

    assert response.status_code == 204 and not response.content
    assert _stored_files(media_root) == []
    assert api_client.get(f"/api/documents/{document.pk}").status_code == 404


def test_a_failed_write_removes_the_files_already_written(user_factory, media_root, monkeypatch):
    """GIVEN the storage fails on the second file of an upload THEN the first is removed again."""
    real_save = media.media_save
    calls = []

    def flaky(path: str, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_save(path, data)

    monkeypatch.setattr("vision.services.documents.media_save", flaky)
    with pytest.raises(OSError, match="No space"):
        document_upload(
            scope=scope_for(user_factory()), data=files.pdf_bytes(2, (200, 150)), filename="a.pdf"
        )

    assert len(calls) == 2
    assert Document.objects.count() == 0
    assert _stored_files(media_root) == []


@pytest.mark.parametrize(
    "path", ["../etc/passwd", "/etc/passwd", "uploads/../../x", "uploads//x", "a\\b", ""]
)
def test_paths_outside_the_storage_are_refused(path):
    with pytest.raises(media.MediaPathRefused):
        media.media_read(path)
    with pytest.raises(media.MediaPathRefused):
        media.media_delete([path])


def test_upload_folders_are_random_and_prefixed():
    first, second = media.upload_folder(prefix=""), media.upload_folder(prefix="org-7")
    assert first.startswith("uploads/") and len(first.split("/")) == 3
    assert second.startswith("org-7/uploads/") and first.split("/")[-1] != second.split("/")[-1]
    with pytest.raises(media.MediaPathRefused):
        media.upload_folder(prefix="../org")
