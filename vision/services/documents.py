"""Documents: upload (validate, store under a random name, record, recognise duplicates) and
delete (the rows, then the files). Files go through vision/media.py, a folder or a bucket."""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from PIL import Image, ImageOps

from vision.media import media_delete, media_save, upload_folder
from vision.models import Document, DocumentKind, DocumentPage, ExtractionEvent, ExtractionEventAction
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

    The files go under the organisation's prefix of the storage (`org-12/uploads/…`, see
    `vision.media.upload_folder`). Raises `UploadRejected` (4xx naming the rule) or
    `ScannerUnavailable` (503); in both cases nothing is stored. The same bytes uploaded again in
    the same organisation return the first Document.
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


def organization_prefix(organization_id: int) -> str:
    """Where an organisation's files live in the storage: one prefix each (a bucket policy or a
    lifecycle rule can name it)."""
    return f"org-{organization_id}"


def _document_store(
    *, scope, data: bytes, name: str, sha256: str, upload_type: UploadType, pages: list[_PageImage]
) -> DocumentUploadResult:
    """Write the files into a new random folder, then insert the rows in one transaction. Any
    failure deletes the files written: nothing half-stored remains (only a process killed between
    the two can leave files no row names)."""
    relative_dir = upload_folder(prefix=organization_prefix(scope.organization.pk))
    original = f"original.{upload_type.extension}"
    written: list[str] = []

    def save(file_name: str, content: bytes) -> None:
        path = f"{relative_dir}/{file_name}"
        written.append(path)
        media_save(path, content)

    try:
        save(original, data)
        page_files = []
        for number, page in enumerate(pages, start=1):
            if page.png is None:
                page_files.append((original, sha256))
                continue
            page_name = f"page-{number:04d}.png"
            save(page_name, page.png)
            page_files.append((page_name, hashlib.sha256(page.png).hexdigest()))
    except BaseException:
        _delete_quietly(written)
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
        _delete_quietly(written)
        existing = Document.objects.filter(organization=scope.organization, sha256=sha256).first()
        if existing is None:
            raise
        return DocumentUploadResult(document=existing, created=False)
    except BaseException:
        _delete_quietly(written)
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


def _delete_quietly(paths: list[str]) -> None:
    """Clean-up on a failed upload: the caller's error is the one to raise, not the storage's."""
    try:
        media_delete(paths)
    except Exception:
        logger.exception("could not delete %d files of a failed upload", len(paths))


def document_files(document: Document) -> list[str]:
    """Every stored file of `document`: the upload and its page images."""
    return sorted({document.file, *document.pages.values_list("file", flat=True)})


def document_delete(*, document: Document, actor=None, retention: bool = False) -> None:
    """Delete `document`, its pages, jobs and extractions, then its files from storage once the
    transaction has committed (a rolled-back delete keeps them). Deleting files that are already
    gone is no error, so a delete interrupted after the commit can be run again on the files.

    A file that cannot be deleted (the bucket unreachable) is logged with the document's id and
    stays as an orphan; the rows are gone either way. The organisation's audit trail keeps who
    deleted it (`actor`; none: the platform, e.g. retention) by id, never its contents."""
    paths = document_files(document)
    document_id = document.pk
    with transaction.atomic():
        ExtractionEvent.objects.create(
            organization_id=document.organization_id,
            document_id=document_id,
            actor=actor,
            action=ExtractionEventAction.RETENTION_DELETED if retention else ExtractionEventAction.DELETED,
            detail={"pages": document.page_count, "files": len(paths)},
        )
        document.delete()

    def delete_files() -> None:
        try:
            media_delete(paths)
        except Exception:
            logger.exception("document %s deleted; its %d files were not", document_id, len(paths))
            return
        logger.info("document %s deleted with its %d files", document_id, len(paths))

    transaction.on_commit(delete_files)


def documents_discard(*, documents: list[Document]) -> None:
    """Undo uploads this same call made (a batch refused after some of its files were stored):
    the rows and the files at once. Unlike `document_delete` nothing waits for a commit: whether
    an enclosing transaction commits or rolls back, no one else has these files."""
    paths = [path for document in documents for path in document_files(document)]
    for document in documents:
        document.delete()
    _delete_quietly(paths)


def document_set_legal_hold(*, scope, document: Document, hold: bool) -> Document:
    """Put `document` under legal hold (retention never deletes it) or release it: admins of its
    organisation only. Logged with the document's id and who did it."""
    scope.require_admin()
    if document.organization_id != scope.organization.pk:
        from docplatform.errors import NotFound

        raise NotFound(f"Document {document.pk} not found.")
    if document.legal_hold != hold:
        Document.objects.filter(pk=document.pk).update(legal_hold=hold)
        document.legal_hold = hold
        logger.info(
            "document %s legal hold %s: organization=%s user=%s",
            document.pk,
            "set" if hold else "released",
            document.organization_id,
            getattr(scope.user, "pk", None),
        )
    return document
