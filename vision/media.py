"""Media I/O: every read and write of uploads and page images, on the configured storage.

`STORAGES["default"]` is a folder (`MEDIA_STORAGE=local`, MEDIA_ROOT) or an S3-compatible bucket
(`MEDIA_STORAGE=s3`, docplatform/settings/storage.py); callers name a stored file by the relative
path kept in the database (`Document.file`, `DocumentPage.file`) and never learn which. Paths are
checked here: relative, forward slashes, no `..`, so nothing is read or written outside the
storage whatever a row or a spec holds.

Errors are the storage's: a missing file is `FileNotFoundError` on both backends; an unreachable
bucket raises botocore's connection errors, which `vision.faults.is_transient` counts as a blip
(the job runs again), as it does an NFS mount's EIO.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.http import FileResponse, HttpResponse, HttpResponseRedirect

logger = logging.getLogger(__name__)

UPLOADS_DIR = "uploads"  # under the storage's root (and a prefix); no URL serves it
# A prefix names a tenant's part of the storage (`org-12`); empty: the storage's root.
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


class MediaPathRefused(ValueError):
    """A path that is not a plain relative path inside the storage."""


def _storage() -> Storage:
    return storages["default"]


def checked_path(path: str) -> str:
    """`path` if it is relative, made of plain segments (no `..`, no `\\`); else MediaPathRefused."""
    parts = path.split("/")
    if not path or any(part in ("", ".", "..") or not _SEGMENT.match(part) for part in parts):
        raise MediaPathRefused(f"not a stored media path: {path[:200]!r}")
    return path


def upload_folder(*, prefix: str) -> str:
    """A new random folder for one upload's files: `<prefix>/uploads/ab/<32 hex>` (no prefix:
    `uploads/ab/<32 hex>`). The one place upload paths are made."""
    if prefix and not _PREFIX.match(prefix):
        raise MediaPathRefused(f"not a media prefix: {prefix[:100]!r}")
    token = secrets.token_hex(16)
    folder = f"{UPLOADS_DIR}/{token[:2]}/{token}"
    return f"{prefix}/{folder}" if prefix else folder


def media_save(path: str, data: bytes) -> None:
    """Store `data` at `path`, which must be free (upload paths are random)."""
    stored = _storage().save(checked_path(path), ContentFile(data))
    if stored != path:  # the storage picked another name: the path was taken
        _storage().delete(stored)
        raise FileExistsError(f"media path already in use: {path}")


def media_read(path: str) -> bytes:
    with media_open(path) as handle:
        return handle.read()


def media_open(path: str) -> IO[bytes]:
    """The stored file, open for binary reading (close it, or use `with`)."""
    return _storage().open(checked_path(path), "rb")


def media_exists(path: str) -> bool:
    return _storage().exists(checked_path(path))


def media_delete(paths: Iterable[str]) -> None:
    """Delete the files at `paths`; a file already gone is no error (delete twice, same end). In a
    folder, the upload folders left empty go too."""
    storage = _storage()
    unique = sorted({checked_path(path) for path in paths})
    for path in unique:
        storage.delete(path)
    if isinstance(storage, FileSystemStorage):
        _remove_empty_folders(storage, unique)


def _remove_empty_folders(storage: FileSystemStorage, paths: list[str]) -> None:
    root = Path(storage.location).resolve()
    for path in paths:
        folder = Path(storage.path(path)).parent
        while folder != root and folder.is_relative_to(root):
            try:
                folder.rmdir()
            except OSError:  # not empty (another upload's files), or already gone
                break
            folder = folder.parent


def media_response(path: str, *, content_type: str) -> HttpResponse:
    """A download of the stored file, for a view that has checked the user may read it;
    FileNotFoundError when it is gone.

    Streamed through this process; with S3 and MEDIA_PRESIGNED_SECONDS > 0, a redirect to a
    presigned URL valid that long instead, so the bytes go from the bucket to the browser. The
    streamed answer is never rendered as a page of ours (an uploaded SVG or HTML would run script):
    a sandboxing Content-Security-Policy goes with it."""
    seconds = settings.MEDIA_PRESIGNED_SECONDS
    if seconds and settings.MEDIA_STORAGE == "s3":
        if not media_exists(path):  # a presigned URL of a missing object would be the bucket's 404
            raise FileNotFoundError(path)
        url = _storage().url(path, parameters={"ResponseContentType": content_type}, expire=seconds)
        response: HttpResponse = HttpResponseRedirect(url)
        response["Cache-Control"] = "private, no-store"  # the URL dies; never cache the redirect
        return response
    response = FileResponse(media_open(path), content_type=content_type)
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response
