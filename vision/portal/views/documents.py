"""Page images of the user's own documents, for the job page and the chat history. Uploads are
never served from a public path: only these owner-checked views read them."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse

from accounts.scope import scope_of
from vision.media import MediaPathRefused, media_response
from vision.models import Document, ExtractionEventAction
from vision.portal.views import found_or_404
from vision.selectors import document_get
from vision.services.audit import audit_record


def document_file_response(*, document: Document, page: int | None) -> HttpResponse:
    """The bytes of one page image (or, with page None, the upload as received): streamed, or a
    redirect to a short-lived presigned URL (vision.media.media_response)."""
    if page is None:
        relative, content_type = document.file, document.content_type
    else:
        found = document.pages.filter(number=page).first()
        if found is None:
            raise Http404("No such page.")
        relative = found.file
        content_type = document.content_type if found.file == document.file else "image/png"
    try:
        return media_response(relative, content_type=content_type)
    except (FileNotFoundError, MediaPathRefused):
        raise Http404("The file is gone.") from None


def _own_document(request: HttpRequest, document_id: int) -> Document:
    return found_or_404(document_get, scope=scope_of(request), document_id=document_id)


@login_required
def document_page(request: HttpRequest, document_id: int, page: int) -> HttpResponse:
    return document_file_response(document=_own_document(request, document_id), page=page)


@login_required
def document_original(request: HttpRequest, document_id: int) -> HttpResponse:
    document = _own_document(request, document_id)
    audit_record(scope=scope_of(request), action=ExtractionEventAction.DOWNLOADED, document_id=document.pk)
    return document_file_response(document=document, page=None)
