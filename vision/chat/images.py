"""Chat images: `image_url` → bytes → a stored Document (through the upload service).

The engine sees images only as stored files (GenerationSpec carries paths and sha256), so every
chat image goes through the same checks as an upload (real type, byte and pixel limits) and is
kept once per organisation (dedupe by sha256). Nothing inline in the database.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from django.conf import settings

from docplatform.errors import ValidationFailed
from vision.chat.fetch import safe_fetch

_DATA_URL = re.compile(
    r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I
)
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


class ImageRefused(ValidationFailed):
    code = "invalid_image_url"


class ImageUnusable(ValidationFailed):
    """The bytes behind an image_url broke an upload rule. OpenAI answers an unusable image with
    400 invalid_request_error (SDKs raise BadRequestError), not the upload API's 413/415/422;
    `code` keeps the rule (`type_unsupported`, `image_corrupt`, ...)."""

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message, extra={"rule": rule})
        self.code = rule


@dataclass(frozen=True)
class StoredImage:
    document_id: int
    path: str  # a stored media path (vision/media.py), relative to the storage
    sha256: str


def image_bytes(url: str) -> tuple[bytes, str]:
    """The bytes behind an image_url and a file name for them. Refuses what docs/architecture.md
    ("Errors and limits") refuses."""
    max_bytes = settings.OPENAI_MAX_IMAGE_BYTES
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        match = _DATA_URL.match(url)
        if match is None or not match.group("b64"):
            raise ImageRefused("data: image URLs must be base64 encoded (data:image/png;base64,...)")
        payload = url[match.end() :]
        if len(payload) > (max_bytes * 4) // 3 + 4:
            raise ImageRefused(f"image is larger than {max_bytes} bytes")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ImageRefused("data: image URL is not valid base64") from None
        if not data:
            raise ImageRefused("data: image URL is empty")
        extension = _EXTENSIONS.get((match.group("type") or "").lower(), "bin")
        return data, f"chat-image.{extension}"
    if scheme in ("http", "https"):
        if not settings.OPENAI_IMAGE_URL_FETCH:
            raise ImageRefused(
                "image URLs over http(s) are disabled on this server (OPENAI_IMAGE_URL_FETCH); "
                "send the image as a data: URL"
            )
        fetched = safe_fetch(
            url,
            max_bytes=max_bytes,
            timeout_s=settings.OPENAI_IMAGE_FETCH_TIMEOUT_SECONDS,
            max_redirects=settings.OPENAI_IMAGE_FETCH_MAX_REDIRECTS,
        )
        name = fetched.url.rsplit("/", 1)[-1].split("?", 1)[0][:100] or "image"
        return fetched.data, name
    raise ImageRefused(f"image URL scheme {scheme or '(none)'!r} is not allowed; use a data: URL")


def image_store(*, scope, url: str) -> StoredImage:
    """Fetch or decode `url` and store it as a Document of the scope's organisation (sync: DB and
    file I/O)."""
    from vision.models import DocumentKind
    from vision.services.documents import document_upload
    from vision.validators import UploadRejected, detect_type

    data, filename = image_bytes(url)
    try:
        if detect_type(data).kind != DocumentKind.IMAGE:  # a PDF is a document: /api/jobs, not chat
            raise ImageRefused("image_url must point at an image (JPEG, PNG, WebP, TIFF, BMP), not a PDF")
        document = document_upload(scope=scope, data=data, filename=filename).document
    except UploadRejected as exc:
        raise ImageUnusable(f"Invalid image in image_url: {exc.message}", rule=exc.code) from None
    page = document.spec_images(pages=[1])[0]  # the (EXIF-rotated) page the engine reads
    return StoredImage(document_id=document.pk, path=page.path, sha256=page.sha256)
