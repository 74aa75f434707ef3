"""Pieces the /api views share: the one pagination of /api lists and reading uploaded files
within the byte limit."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile as DjangoUploadedFile
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from vision.services.jobs import UploadedFile


class Pagination(PageNumberPagination):
    """Every /api list: `page` (from 1) and `page_size` (20 by default, at most 100); the body is
    `{count, next, previous, results}`."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


def paginated_response(
    view: APIView, request: Request, rows, serializer_class, **serializer_kwargs
) -> Response:
    """One page of `rows` through `serializer_class` (many=True), in the Pagination body."""
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(rows, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, **serializer_kwargs).data)


def uploaded_file(file: DjangoUploadedFile) -> UploadedFile:
    """The upload's name and bytes. Reads at most one byte past the limit, so an oversized file is
    refused (413, by the validators) without holding all of it in memory."""
    file.seek(0)
    data = file.read(settings.UPLOAD_MAX_BYTES + 1)
    return UploadedFile(name=file.name or "", data=data)
