"""Every check an upload passes before it is stored. Each rejection names the rule it broke.

Order (vision/services/documents.py): file name → byte size → virus scan → real type (libmagic over
the bytes; the name and the client's content type are ignored) → decoding with the pixel limit
read from the header before any pixel is decoded → PDF page limit; an XML file is parsed with
entities and DTDs refused and must be a CII or UBL e-invoice. Rejections are
`UploadRejected` subclasses: 413 too large, 415 unsupported type, 422 content that cannot be
accepted (bomb, truncated, too many pages, infected), 400 a bad request (name, empty file);
503 when the virus scanner is configured but unreachable.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import unicodedata
from dataclasses import dataclass
from http import HTTPStatus

import magic
import pillow_heif
import pypdfium2
from django.conf import settings
from PIL import Image

from docplatform.errors import ApplicationError, ServiceUnavailable
from vision.clamd import ClamdAddress, ClamdError, clamd_instream

logger = logging.getLogger(__name__)

MAX_FILENAME_CHARS = 255

# HEIC/HEIF (the iPhone camera default) through pillow-heif's Pillow plugin, format "HEIF". Opening
# parses the container only, so the header's size meets `check_pixels` before any pixel is decoded;
# libheif applies the stored rotation and mirroring (irot/imir, with the EXIF orientation reset to 1)
# while opening, so the size checked and the page made are upright.
pillow_heif.register_heif_opener()

# pdfium is not thread-safe, and the web server runs sync views in threads.
PDFIUM_LOCK = threading.Lock()


class UploadRejected(ApplicationError):
    """An upload broke a rule; `code` names the rule (e.g. `image_too_many_pixels`)."""

    status_code = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message, extra={"rule": rule})
        self.code = rule


class UploadTooLarge(UploadRejected):
    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedUploadType(UploadRejected):
    status_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class UnprocessableUpload(UploadRejected):
    status_code = HTTPStatus.UNPROCESSABLE_ENTITY


class ScannerUnavailable(ServiceUnavailable):
    code = "virus_scanner_unavailable"


@dataclass(frozen=True)
class UploadType:
    mime: str  # canonical MIME type
    kind: str  # DocumentKind value: "image" | "pdf" | "xml"
    extension: str  # for the stored file's name
    pil_format: str | None  # what Pillow must also see in the bytes (None for PDF and XML)


_TYPES = {
    "image/jpeg": UploadType("image/jpeg", "image", "jpg", "JPEG"),
    "image/png": UploadType("image/png", "image", "png", "PNG"),
    "image/webp": UploadType("image/webp", "image", "webp", "WEBP"),
    "image/tiff": UploadType("image/tiff", "image", "tif", "TIFF"),
    "image/bmp": UploadType("image/bmp", "image", "bmp", "BMP"),
    "image/x-ms-bmp": UploadType("image/bmp", "image", "bmp", "BMP"),  # older libmagic's name
    "image/heic": UploadType("image/heic", "image", "heic", "HEIF"),
    "image/heif": UploadType("image/heif", "image", "heif", "HEIF"),
    "application/pdf": UploadType("application/pdf", "pdf", "pdf", None),
    # E-invoices: XRechnung (CII or UBL), Peppol BIS / UBL 2.1, Factur-X / ZUGFeRD XML on its own.
    "application/xml": UploadType("application/xml", "xml", "xml", None),
    "text/xml": UploadType("application/xml", "xml", "xml", None),
}
_XML_TYPE = _TYPES["application/xml"]
ACCEPTED_TYPES = "JPEG, PNG, WebP, TIFF, BMP, HEIC/HEIF, PDF, XML e-invoices (CII, UBL)"


def validate_filename(name: str) -> str:
    """The client's file name, for display only. Anything that is not a plain name is refused:
    browsers send bare names, so a separator or `..` means a crafted request."""
    name = unicodedata.normalize("NFC", name or "").strip()
    if not name:
        return "upload"
    if len(name) > MAX_FILENAME_CHARS:
        raise UploadRejected(
            f"File name is longer than {MAX_FILENAME_CHARS} characters.", rule="filename_invalid"
        )
    if "/" in name or "\\" in name or name in {".", ".."} or name.startswith(".."):
        raise UploadRejected(
            "File name must be a plain name without directories or '..'.", rule="filename_invalid"
        )
    if any(unicodedata.category(char) in {"Cc", "Cf"} for char in name):
        raise UploadRejected("File name contains control characters.", rule="filename_invalid")
    return name


def validate_size(data: bytes) -> None:
    if not data:
        raise UploadRejected("The file is empty (0 bytes).", rule="file_empty")
    limit = settings.UPLOAD_MAX_BYTES
    if len(data) > limit:
        raise UploadTooLarge(
            f"The file is {len(data)} bytes; the limit is {limit} bytes.", rule="file_too_large"
        )


def validate_virus_free(data: bytes) -> None:
    """Scan with clamd when CLAMD_SOCKET or CLAMD_HOST is set. Unreachable clamd → 503: nothing is
    ever stored unscanned."""
    if not (settings.CLAMD_SOCKET or settings.CLAMD_HOST):
        return
    address = ClamdAddress(
        socket_path=settings.CLAMD_SOCKET, host=settings.CLAMD_HOST, port=settings.CLAMD_PORT
    )
    try:
        result = clamd_instream(address, data, timeout=settings.CLAMD_TIMEOUT_SECONDS)
    except ClamdError as exc:
        logger.error("virus scan failed: %s", exc)
        raise ScannerUnavailable(
            "The virus scanner is unavailable; the upload was not stored. Try again later.", retry_after=30
        ) from exc
    if result.infected:
        raise UnprocessableUpload(
            f"The file was refused by the virus scanner: {result.signature}.", rule="virus_found"
        )


def detect_type(data: bytes) -> UploadType:
    """The real type, from the bytes (libmagic)."""
    mime = magic.from_buffer(data[: 64 * 1024], mime=True)
    upload_type = _TYPES.get(mime)
    if upload_type is None and mime == "text/plain" and data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        upload_type = _XML_TYPE  # XML without an <?xml ...?> declaration: libmagic says text/plain
    if upload_type is None:
        raise UnsupportedUploadType(
            f"Files of type {mime} are not accepted; send one of {ACCEPTED_TYPES}.", rule="type_unsupported"
        )
    return upload_type


# Markup or script inside an upload: an HTML/SVG/JS payload glued to (or hidden in) an image or PDF,
# a polyglot that a browser or another tool could run if the file ever left through a permissive
# path. Such byte sequences do not occur by chance in compressed image data (>= 7 fixed bytes), so
# refusing them costs no real document.
_ACTIVE_MARKUP = re.compile(
    rb"(?i)<\s*(script|html|svg|iframe|object|embed)[\s>/]|<!doctype\s+html|<\?php|javascript:"
)
# PDF actions that run code or programs. pdfium never runs them here (forms and JavaScript are not
# initialised), but a stored PDF may be downloaded and opened elsewhere. Embedded files stay allowed:
# ZUGFeRD / Factur-X invoices carry their XML that way.
_PDF_ACTIVE = re.compile(rb"/(JavaScript|JS|Launch)[\s/(<\[]")


def validate_no_active_content(data: bytes, upload_type: UploadType) -> None:
    """Refuse polyglots and PDFs with scripts: 422 `active_content`."""
    match = _ACTIVE_MARKUP.search(data)
    if match is None and upload_type.kind == "pdf":
        match = _PDF_ACTIVE.search(data)
    if match is not None:
        found = match.group(0)[:20].decode("latin-1").strip()
        raise UnprocessableUpload(
            f"The {upload_type.extension.upper()} file carries active content ({found!r}: markup, "
            "scripts or actions); documents with scripts are not accepted.",
            rule="active_content",
        )


def check_pixels(width: int, height: int, *, what: str) -> None:
    limit = settings.UPLOAD_MAX_PIXELS
    if width <= 0 or height <= 0:
        raise UnprocessableUpload(f"The {what} has no pixels ({width}x{height}).", rule="image_corrupt")
    if width * height > limit:
        raise UnprocessableUpload(
            f"The {what} is {width}x{height} = {width * height} pixels; the limit is {limit} pixels.",
            rule="image_too_many_pixels",
        )


def check_page_count(pages: int) -> None:
    limit = settings.UPLOAD_PDF_MAX_PAGES
    if pages < 1:
        raise UnprocessableUpload("The document has no pages.", rule="pdf_unreadable")
    if pages > limit:
        raise UnprocessableUpload(
            f"The document has {pages} pages; the limit is {limit} pages.", rule="too_many_pages"
        )


def open_image_checked(data: bytes, upload_type: UploadType) -> Image.Image:
    """Open an image and check its declared size BEFORE decoding, then decode the first frame so
    a truncated or corrupt file fails here. Pillow's own bomb guard uses the same limit."""
    # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; `check_pixels` refuses
    # everything above it first, so the warning never passes silently.
    Image.MAX_IMAGE_PIXELS = settings.UPLOAD_MAX_PIXELS
    try:
        image = Image.open(io.BytesIO(data), formats=[upload_type.pil_format])
    except Image.DecompressionBombError as exc:
        raise UnprocessableUpload(
            f"The image is a decompression bomb: {exc}", rule="image_too_many_pixels"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedUploadType(
            f"The file looks like {upload_type.mime} but is not a readable {upload_type.pil_format} image.",
            rule="type_mismatch",
        ) from exc
    check_pixels(*image.size, what="image")
    decode_frame(image, what="image")
    return image


def decode_frame(image: Image.Image, *, what: str) -> None:
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise UnprocessableUpload(
            f"The {what} is a decompression bomb: {exc}", rule="image_too_many_pixels"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnprocessableUpload(
            f"The {what} is truncated or corrupt and cannot be decoded ({exc}).", rule="image_corrupt"
        ) from exc


def open_pdf_checked(data: bytes) -> pypdfium2.PdfDocument:
    """Open a PDF (caller holds PDFIUM_LOCK) and check its page count. Forms and JavaScript are
    never initialised, so a PDF's scripts do not run."""
    try:
        pdf = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise UnprocessableUpload(
            f"The PDF cannot be opened (damaged or password-protected): {exc}.", rule="pdf_unreadable"
        ) from exc
    try:
        check_page_count(len(pdf))
    except UploadRejected:
        pdf.close()
        raise
    return pdf


def validate_einvoice(data: bytes) -> None:
    """An XML upload must be an e-invoice: parsed with no DTD, no entities and no network, within
    a size bound (vision.ocr.einvoice), and its root a CII or UBL invoice. 413 too large, 422 a
    DTD / entities (an entity bomb is refused, never expanded) or malformed XML, 415 XML that is
    no e-invoice."""
    from vision.ocr.einvoice import (
        XML_FORBIDDEN,
        XML_MALFORMED,
        XML_TOO_LARGE,
        EInvoiceError,
        read_einvoice_xml,
    )

    try:
        read_einvoice_xml(data)
    except EInvoiceError as exc:
        if exc.code == XML_TOO_LARGE:
            raise UploadTooLarge(str(exc), rule=exc.code) from exc
        if exc.code in (XML_FORBIDDEN, XML_MALFORMED):
            raise UnprocessableUpload(str(exc), rule=exc.code) from exc
        raise UnsupportedUploadType(str(exc), rule=exc.code) from exc
