"""Pieces the /api views share: pagination and reading uploaded files within the byte limit."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile as DjangoUploadedFile
from rest_framework.pagination import PageNumberPagination

from vision.services.jobs import UploadedFile


class Pagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


def uploaded_file(file: DjangoUploadedFile) -> UploadedFile:
    """The upload's name and bytes. Reads at most one byte past the limit, so an oversized file is
    refused (413, by the validators) without holding all of it in memory."""
    file.seek(0)
    data = file.read(settings.UPLOAD_MAX_BYTES + 1)
    return UploadedFile(name=file.name or "", data=data)
