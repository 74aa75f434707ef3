"""document_upload: storage, duplicates, EXIF rotation, PDF rendering, and nothing half-stored."""

from pathlib import Path

import pytest
from PIL import Image

from accounts.scope import scope_for
from tests.vision import files
from vision.models import Document, DocumentPage
from vision.services.documents import document_upload
from vision.validators import UploadRejected

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _restore_pillow_pixel_limit(monkeypatch):
    """`open_image_checked` sets Pillow's global bomb limit from the setting; tests that lower the
    setting must not leave a tiny limit for later tests that open big images."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _stored_files(media_root: Path) -> list[Path]:
    return sorted(p for p in media_root.rglob("*") if p.is_file())


def test_image_is_stored_under_a_random_name_with_its_facts(user_factory, media_root):
    user = user_factory()
    data = files.image_bytes("PNG", (64, 48))

    result = document_upload(scope=scope_for(user), data=data, filename="holiday.png")

    document = result.document
    assert result.created is True
    assert (document.content_type, document.kind, document.size, document.page_count) == (
        "image/png",
        "image",
        len(data),
        1,
    )
    assert document.original_name == "holiday.png"
    assert (
        document.file.startswith(f"org-{document.organization_id}/uploads/")
        and "holiday" not in document.file
    )
    assert (media_root / document.file).read_bytes() == data
    import hashlib

    assert document.sha256 == hashlib.sha256(data).hexdigest()
    page = document.pages.get()
    assert (page.number, page.width, page.height) == (1, 64, 48)
    assert page.file == document.file  # a plain RGB PNG is its own page
    assert document.spec_images()[0].path == document.file


def test_same_file_same_user_is_recognised_other_user_gets_own(user_factory):
    alice, bob = user_factory(), user_factory()
    data = files.image_bytes("JPEG")

    first = document_upload(scope=scope_for(alice), data=data, filename="a.jpg")
    again = document_upload(scope=scope_for(alice), data=data, filename="renamed.jpg")
    bobs = document_upload(scope=scope_for(bob), data=data, filename="a.jpg")

    assert again.created is False and again.document.pk == first.document.pk
    assert bobs.created is True and bobs.document.pk != first.document.pk
    assert Document.objects.count() == 2


def test_exif_orientation_is_applied_to_the_page(user_factory, media_root):
    """GIVEN an 80x40 JPEG (left red, right blue) tagged Orientation=6 (rotate 90° clockwise)
    THEN its page is 40x80 with red on top."""
    data = files.halves_jpeg_with_orientation(6)

    document = document_upload(scope=scope_for(user_factory()), data=data, filename="phone.jpg").document

    page = document.pages.get()
    assert (page.width, page.height) == (40, 80)
    assert page.file != document.file and page.file.endswith(".png")
    with Image.open(media_root / page.file) as image:
        top, bottom = image.getpixel((20, 10)), image.getpixel((20, 70))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_heic_photo_becomes_an_upright_png_page(user_factory, media_root):
    """GIVEN an 80x40 HEIC (left red, right blue) tagged Orientation=6, as an iPhone sends a
    portrait photo THEN it is stored as image/heic and its page is a 40x80 PNG with red on top,
    the same page the JPEG with that tag gets."""
    data = files.heic_bytes((80, 40), orientation=6)

    document = document_upload(scope=scope_for(user_factory()), data=data, filename="IMG_0001.HEIC").document

    assert (document.content_type, document.kind, document.page_count) == ("image/heic", "image", 1)
    assert document.file.endswith("original.heic")
    page = document.pages.get()
    assert (page.width, page.height) == (40, 80)
    assert page.file != document.file and page.file.endswith(".png")
    with Image.open(media_root / page.file) as image:
        assert image.format == "PNG"
        top, bottom = image.getpixel((20, 10)), image.getpixel((20, 70))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_pdf_pages_are_rendered_to_png(user_factory, media_root, settings):
    settings.UPLOAD_PDF_DPI = 150
    data = files.pdf_bytes(pages=2)

    document = document_upload(scope=scope_for(user_factory()), data=data, filename="scan.pdf").document

    assert (document.kind, document.content_type, document.page_count) == ("pdf", "application/pdf", 2)
    pages = list(document.pages.order_by("number"))
    assert [p.number for p in pages] == [1, 2]
    for page in pages:
        assert abs(page.width - 1240) <= 2 and abs(page.height - 1754) <= 2  # A4 at 150 dpi
        with Image.open(media_root / page.file) as image:
            assert image.format == "PNG" and image.size == (page.width, page.height)


def test_huge_pdf_page_is_rendered_under_the_pixel_limit(user_factory, media_root, settings):
    settings.UPLOAD_MAX_PIXELS = 1_000_000
    data = files.pdf_bytes(pages=1, size_pt=(2000, 2000))  # 4167 px square at 150 dpi

    page = document_upload(
        scope=scope_for(user_factory()), data=data, filename="poster.pdf"
    ).document.pages.get()

    assert page.width * page.height <= 1_000_000
    assert page.width > 900


def test_multi_page_tiff_becomes_pages(user_factory, media_root):
    import io

    frames = [Image.new("RGB", (30, 20), c) for c in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])

    document = document_upload(
        scope=scope_for(user_factory()), data=buffer.getvalue(), filename="fax.tif"
    ).document

    assert document.page_count == 3 and document.pages.count() == 3


@pytest.mark.parametrize(
    ("data", "name", "status", "rule"),
    [
        (b"", "empty.png", 400, "file_empty"),
        (files.HTML_AS_PNG, "page.png", 415, "type_unsupported"),
        (files.SVG_AS_PNG, "vector.png", 415, "type_unsupported"),
        (files.bomb_png(), "bomb.png", 422, "image_too_many_pixels"),
        (files.noisy_jpeg()[:3000], "cut.jpg", 422, "image_corrupt"),
        (files.image_bytes("PNG"), "../../../etc/cron.d/x.png", 400, "filename_invalid"),
    ],
)
def test_rejections_store_nothing(user_factory, media_root, data, name, status, rule):
    with pytest.raises(UploadRejected) as caught:
        document_upload(scope=scope_for(user_factory()), data=data, filename=name)

    assert (caught.value.status_code, caught.value.code) == (status, rule)
    assert Document.objects.count() == 0
    assert _stored_files(media_root) == []


def test_too_many_pdf_pages_store_nothing(user_factory, media_root, settings):
    settings.UPLOAD_PDF_MAX_PAGES = 2
    with pytest.raises(UploadRejected) as caught:
        document_upload(scope=scope_for(user_factory()), data=files.pdf_bytes(3), filename="long.pdf")
    assert (caught.value.status_code, caught.value.code) == (422, "too_many_pages")
    assert _stored_files(media_root) == []


def test_oversized_is_413_and_stores_nothing(user_factory, media_root, settings):
    settings.UPLOAD_MAX_BYTES = 100
    with pytest.raises(UploadRejected) as caught:
        document_upload(scope=scope_for(user_factory()), data=files.image_bytes("PNG"), filename="big.png")
    assert caught.value.status_code == 413
    assert _stored_files(media_root) == []


def test_database_failure_removes_the_written_files(user_factory, media_root, monkeypatch):
    """GIVEN the page rows fail to insert THEN the files already written are removed
    and the Document row is rolled back."""

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(DocumentPage.objects, "bulk_create", fail)
    with pytest.raises(RuntimeError):
        document_upload(scope=scope_for(user_factory()), data=files.pdf_bytes(1), filename="x.pdf")

    assert Document.objects.count() == 0
    assert _stored_files(media_root) == []
