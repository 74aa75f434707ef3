"""Each upload rule in vision/validators.py, on files the tests make. No database."""

import pytest
from PIL import Image

from tests.vision import files
from vision import validators
from vision.validators import (
    UnprocessableUpload,
    UnsupportedUploadType,
    UploadRejected,
    UploadTooLarge,
)


@pytest.fixture(autouse=True)
def _restore_pillow_pixel_limit(monkeypatch):
    """`open_image_checked` sets Pillow's global bomb limit from the setting; tests that lower the
    setting must not leave a tiny limit for later tests that open big images."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (files.image_bytes("JPEG"), "image/jpeg"),
        (files.image_bytes("PNG"), "image/png"),
        (files.image_bytes("WEBP"), "image/webp"),
        (files.image_bytes("TIFF"), "image/tiff"),
        (files.image_bytes("BMP"), "image/bmp"),
        (files.heic_bytes(), "image/heic"),
        (files.pdf_bytes(1), "application/pdf"),
    ],
)
def test_accepted_types_are_detected_from_the_bytes(data, mime):
    assert validators.detect_type(data).mime == mime


@pytest.mark.parametrize(
    ("data", "detected"),
    [(files.HTML_AS_PNG, "text/html"), (files.SVG_AS_PNG, "image/svg+xml"), (files.EICAR, "text/plain")],
)
def test_other_types_are_415_naming_the_detected_type(data, detected):
    with pytest.raises(UnsupportedUploadType) as caught:
        validators.detect_type(data)
    assert caught.value.status_code == 415
    assert caught.value.code == "type_unsupported"
    assert detected in caught.value.message


def test_zero_bytes_is_400():
    with pytest.raises(UploadRejected) as caught:
        validators.validate_size(b"")
    assert caught.value.status_code == 400 and caught.value.code == "file_empty"


def test_over_the_byte_limit_is_413(settings):
    settings.UPLOAD_MAX_BYTES = 1000
    validators.validate_size(b"x" * 1000)
    with pytest.raises(UploadTooLarge) as caught:
        validators.validate_size(b"x" * 1001)
    assert caught.value.status_code == 413 and caught.value.code == "file_too_large"
    assert "1001" in caught.value.message and "1000" in caught.value.message


@pytest.mark.parametrize("size", [(100_000, 100_000), (8000, 8000)])
def test_bomb_png_is_refused_from_its_header(settings, size):
    """GIVEN a ~100-byte PNG declaring billions of pixels THEN it is refused before decoding,
    whether Pillow's own guard (>2x limit) or ours (>limit) sees it first."""
    settings.UPLOAD_MAX_PIXELS = 50_000_000
    data = files.bomb_png(*size)
    assert len(data) < 200
    upload_type = validators.detect_type(data)
    with pytest.raises(UnprocessableUpload) as caught:
        validators.open_image_checked(data, upload_type)
    assert caught.value.status_code == 422 and caught.value.code == "image_too_many_pixels"


def test_pixel_limit_is_a_setting(settings):
    settings.UPLOAD_MAX_PIXELS = 64 * 48 - 1
    data = files.image_bytes("PNG", (64, 48))
    with pytest.raises(UnprocessableUpload, match="64x48"):
        validators.open_image_checked(data, validators.detect_type(data))


def test_truncated_jpeg_is_422():
    data = files.noisy_jpeg()
    truncated = data[: len(data) // 2]
    with pytest.raises(UnprocessableUpload) as caught:
        validators.open_image_checked(truncated, validators.detect_type(truncated))
    assert caught.value.code == "image_corrupt"


def test_png_header_on_garbage_is_refused():
    data = b"\x89PNG\r\n\x1a\n" + b"\0" * 200
    with pytest.raises(UploadRejected):
        upload_type = validators.detect_type(data)
        validators.open_image_checked(data, upload_type)


def test_pdf_page_limit(settings):
    settings.UPLOAD_PDF_MAX_PAGES = 3
    with validators.PDFIUM_LOCK:
        validators.open_pdf_checked(files.pdf_bytes(3)).close()
        with pytest.raises(UnprocessableUpload) as caught:
            validators.open_pdf_checked(files.pdf_bytes(4))
    assert caught.value.code == "too_many_pages" and "4 pages" in caught.value.message


def test_damaged_pdf_is_422():
    data = files.pdf_bytes(1)[:60]
    with validators.PDFIUM_LOCK, pytest.raises(UnprocessableUpload) as caught:
        validators.open_pdf_checked(data)
    assert caught.value.code == "pdf_unreadable"


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd.png", "..\\..\\boot.ini", "a/b.png", "..", "evil\x00.png", "x" * 256 + ".png"],
)
def test_path_traversal_and_odd_file_names_are_400(name):
    with pytest.raises(UploadRejected) as caught:
        validators.validate_filename(name)
    assert caught.value.status_code == 400 and caught.value.code == "filename_invalid"


def test_plain_names_pass():
    assert validators.validate_filename(" scan 2024 (1).pdf ") == "scan 2024 (1).pdf"
    assert validators.validate_filename("") == "upload"


def test_scan_is_skipped_when_clamd_is_not_configured(settings):
    settings.CLAMD_SOCKET = None
    settings.CLAMD_HOST = None
    validators.validate_virus_free(files.EICAR)


def test_heic_size_is_checked_from_its_header_before_decoding(settings):
    """GIVEN a HEIC whose coded pixels are cut off (only its header is whole) and a pixel limit below
    its size THEN the pixel rule refuses it: the size was read and checked without decoding, since
    decoding would have failed as corrupt. With the limit above its size, decoding runs and it is
    refused as corrupt."""
    data = files.heic_bytes((320, 240), noise=True)
    truncated = data[: len(data) // 2]
    upload_type = validators.detect_type(truncated)
    assert upload_type.pil_format == "HEIF"
    settings.UPLOAD_MAX_PIXELS = 320 * 240 - 1
    with pytest.raises(UnprocessableUpload, match="320x240") as caught:
        validators.open_image_checked(truncated, upload_type)
    assert caught.value.code == "image_too_many_pixels"
    settings.UPLOAD_MAX_PIXELS = 320 * 240
    with pytest.raises(UnprocessableUpload) as caught:
        validators.open_image_checked(truncated, upload_type)
    assert caught.value.code == "image_corrupt"
    assert validators.open_image_checked(data, upload_type).size == (320, 240)
