"""Uploading documents: validate, store under a random name, record, recognise duplicates."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from PIL import Image, ImageOps

from vision.models import Document, DocumentKind, DocumentPage
from vision.validators import (
    PDFIUM_LOCK,
    UploadType,
    check_page_count,
    check_pixels,
    decode_frame,
    detect_type,
    open_image_checked,
    open_pdf_checked,
    validate_einvoice,
    validate_filename,
    validate_no_active_content,
    validate_size,
    validate_virus_free,
)

logger = logging.getLogger(__name__)

UPLOADS_DIR = "uploads"  # under MEDIA_ROOT; no URL serves MEDIA_ROOT
_INCOMING_DIR = ".incoming"  # under UPLOADS_DIR: half-written uploads, renamed into place when whole
_EXIF_ORIENTATION = 0x0112
# Formats the engine reads as they are; anything else becomes an RGB PNG page.
_PASS_THROUGH_FORMATS = {"JPEG", "PNG", "WEBP"}


@dataclass(frozen=True)
class DocumentUploadResult:
    document: Document
    created: bool  # False: this user had uploaded the same bytes before; `document` is that one


@dataclass(frozen=True)
class _PageImage:
    png: bytes | None  # None: the page is the uploaded file itself
    width: int
    height: int


def document_upload(*, scope, data: bytes, filename: str) -> DocumentUploadResult:
    """Validate `data` (vision/validators.py), store it and its page images, record a Document.

    Raises `UploadRejected` (4xx naming the rule) or `ScannerUnavailable` (503); in both cases
    nothing is stored. The same bytes uploaded again in the same organisation return the first
    Document.
    """
    name = validate_filename(filename)
    validate_size(data)
    validate_virus_free(data)
    upload_type = detect_type(data)
    validate_no_active_content(data, upload_type)
    sha256 = hashlib.sha256(data).hexdigest()

    existing = Document.objects.filter(organization=scope.organization, sha256=sha256).first()
    if existing is not None:
        return DocumentUploadResult(document=existing, created=False)

    if upload_type.kind == DocumentKind.XML:
        validate_einvoice(data)
        pages: list[_PageImage] = []  # an e-invoice's XML has no page image
    elif upload_type.kind == DocumentKind.PDF:
        pages = _pdf_pages(data)
    else:
        pages = _image_pages(data, upload_type)
    return _document_store(
        scope=scope, data=data, name=name, sha256=sha256, upload_type=upload_type, pages=pages
    )


def _image_pages(data: bytes, upload_type: UploadType) -> list[_PageImage]:
    image = open_image_checked(data, upload_type)
    # Multi-page TIFF scans: every frame is a page. Animated WebP/PNG: the first frame only.
    frames = getattr(image, "n_frames", 1) if upload_type.pil_format == "TIFF" else 1
    check_page_count(frames)
    pages = []
    for index in range(frames):
        if index:
            image.seek(index)
            check_pixels(*image.size, what=f"page {index + 1}")
            decode_frame(image, what=f"page {index + 1}")
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        as_is = (
            frames == 1
            and orientation in (None, 1)
            and upload_type.pil_format in _PASS_THROUGH_FORMATS
            and image.mode in ("RGB", "L")
        )
        if as_is:
            pages.append(_PageImage(png=None, width=image.width, height=image.height))
        else:
            # Cameras store portrait photos sideways plus an EXIF tag; the model sees pixels only.
            pages.append(_png_page(ImageOps.exif_transpose(image)))
    return pages


def _pdf_pages(data: bytes) -> list[_PageImage]:
    from vision.ocr.pdf_render import render_page

    pages = []
    with PDFIUM_LOCK:
        pdf = open_pdf_checked(data)
        try:
            for index in range(len(pdf)):
                page = pdf[index]
                try:
                    width_pt, height_pt = page.get_size()
                    what = f"page {index + 1}"
                    if width_pt < 1 or height_pt < 1:
                        check_pixels(int(width_pt), int(height_pt), what=what)
                    image = render_page(
                        page,
                        dpi=settings.UPLOAD_PDF_DPI,
                        max_pixels=settings.UPLOAD_MAX_PIXELS,
                        check=lambda width, height, what=what: check_pixels(width, height, what=what),
                    )
                    pages.append(_png_page(image))
                finally:
                    page.close()
        finally:
            pdf.close()
    return pages


def _png_page(image: Image.Image) -> _PageImage:
    from vision.ocr.pdf_render import on_white

    rgb = on_white(image)  # transparent areas of scans and screenshots are paper
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG", optimize=False)
    return _PageImage(png=buffer.getvalue(), width=rgb.width, height=rgb.height)


def _document_store(
    *, scope, data: bytes, name: str, sha256: str, upload_type: UploadType, pages: list[_PageImage]
) -> DocumentUploadResult:
    """Write the files into a private folder, rename it into place, then insert the rows in one
    transaction. Any failure removes the folder: nothing half-stored remains."""
    media_root = Path(settings.MEDIA_ROOT)
    token = secrets.token_hex(16)
    relative_dir = f"{UPLOADS_DIR}/{token[:2]}/{token}"
    incoming = media_root / UPLOADS_DIR / _INCOMING_DIR / token
    final = media_root / relative_dir
    original = f"original.{upload_type.extension}"
    try:
        incoming.mkdir(parents=True, mode=0o700)
        (incoming / original).write_bytes(data)
        page_files = []
        for number, page in enumerate(pages, start=1):
            if page.png is None:
                page_files.append((original, sha256))
                continue
            page_name = f"page-{number:04d}.png"
            (incoming / page_name).write_bytes(page.png)
            page_files.append((page_name, hashlib.sha256(page.png).hexdigest()))
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(incoming, final)
    except OSError:
        shutil.rmtree(incoming, ignore_errors=True)
        raise

    try:
        with transaction.atomic():
            document = Document.objects.create(
                organization=scope.organization,
                owner=scope.user,
                original_name=name,
                content_type=upload_type.mime,
                kind=upload_type.kind,
                size=len(data),
                sha256=sha256,
                file=f"{relative_dir}/{original}",
                page_count=len(pages),
            )
            DocumentPage.objects.bulk_create(
                DocumentPage(
                    document=document,
                    number=number,
                    file=f"{relative_dir}/{page_name}",
                    sha256=page_sha256,
                    width=page.width,
                    height=page.height,
                )
                for number, (page, (page_name, page_sha256)) in enumerate(
                    zip(pages, page_files, strict=True), start=1
                )
            )
    except IntegrityError:
        # The same bytes were uploaded concurrently in this organisation and the other won.
        shutil.rmtree(final, ignore_errors=True)
        existing = Document.objects.filter(organization=scope.organization, sha256=sha256).first()
        if existing is None:
            raise
        return DocumentUploadResult(document=existing, created=False)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    logger.info(
        "document %s stored: organization=%s user=%s type=%s bytes=%d pages=%d",
        document.pk,
        scope.organization.pk,
        scope.user.pk,
        upload_type.mime,
        len(data),
        len(pages),
    )
    return DocumentUploadResult(document=document, created=True)
