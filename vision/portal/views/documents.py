"""Page images of the user's own documents, for the job page and the chat history. Uploads are
never served from a public path: only these owner-checked views read them."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest

from accounts.scope import scope_of
from vision.models import Document
from vision.portal.views import found_or_404
from vision.selectors import document_get


def document_file_response(*, document: Document, page: int | None) -> FileResponse:
    """The bytes of one page image (or, with page None, the upload as received)."""
    if page is None:
        relative, content_type = document.file, document.content_type
    else:
        found = document.pages.filter(number=page).first()
        if found is None:
            raise Http404("No such page.")
        relative = found.file
        content_type = document.content_type if found.file == document.file else "image/png"
    path = (Path(settings.MEDIA_ROOT) / relative).resolve()
    if not path.is_relative_to(Path(settings.MEDIA_ROOT).resolve()) or not path.is_file():
        raise Http404("The file is gone.")
    response = FileResponse(path.open("rb"), content_type=content_type)
    # Never rendered as a page of ours (an SVG or HTML upload would run script), only as an image.
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _own_document(request: HttpRequest, document_id: int) -> Document:
    return found_or_404(document_get, scope=scope_of(request), document_id=document_id)


@login_required
def document_page(request: HttpRequest, document_id: int, page: int) -> FileResponse:
    return document_file_response(document=_own_document(request, document_id), page=page)


@login_required
def document_original(request: HttpRequest, document_id: int) -> FileResponse:
    return document_file_response(document=_own_document(request, document_id), page=None)
