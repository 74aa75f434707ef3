"""Share links: the public read-only page a link opens (no account), its page images, and the
job page's share form (create: the URL is shown once, in the answer to the POST; revoke).

The public page answers 404 with one message whatever is wrong with the link (tampered, expired,
revoked, document gone). Every view of the page counts as an open and is an audit event; its
images do not count. Neither is indexed by search engines nor leaks its URL in a Referer.
"""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.scope import scope_of
from docplatform.errors import ApplicationError, NotFound
from vision.portal.overlays import document_fields
from vision.portal.views import found_or_404
from vision.portal.views.documents import document_file_response
from vision.portal.views.jobs import job_page
from vision.selectors import document_latest_extraction, job_get
from vision.services.sharing import share_link_create, share_link_open, share_link_resolve, share_link_revoke


def _private(response: HttpResponse) -> HttpResponse:
    """A shared page or image: never indexed, its URL (which holds the secret) never sent on."""
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"  # a revoked link stops working at once
    return response


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


@never_cache
@require_GET
def shared_document(request: HttpRequest, token: str) -> HttpResponse:
    try:
        link = share_link_open(
            token=token, ip=_client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", "")
        )
    except NotFound:
        return _private(render(request, "portal/shared.html", {"link": None}, status=404))
    document = link.document
    extraction = document_latest_extraction(document=document) if link.include_extraction else None
    fields = (
        document_fields({"fields": extraction.fields, "confidence": extraction.confidence})
        if extraction is not None and isinstance(extraction.fields, dict)
        else []
    )
    context = {
        "link": link,
        "document": document,
        "pages": list(document.pages.order_by("number")),
        "token": token,
        "extraction": extraction,
        "fields": fields,
    }
    return _private(render(request, "portal/shared.html", context))


@require_GET
def shared_page_image(request: HttpRequest, token: str, number: int) -> HttpResponse:
    try:
        link = share_link_resolve(token=token)
    except NotFound:
        raise Http404(_("This share link does not exist or is no longer valid.")) from None
    return _private(document_file_response(document=link.document, page=number))


@require_POST
@login_required
def share_create(request: HttpRequest, job_id: int) -> HttpResponse:
    """From the job page: a link to the job's document; the page comes back with its URL, once."""
    scope = scope_of(request)
    job = found_or_404(job_get, scope=scope, job_id=job_id)
    if job.document is None:
        raise Http404("This job has no document.")
    try:
        days = int(request.POST.get("expires_in_days") or 0) or None
    except ValueError:
        days = -1  # refused below, with the bounds
    try:
        _link, token = share_link_create(
            scope=scope,
            document=job.document,
            expires_in=timedelta(days=days) if days is not None else None,
            include_extraction=request.POST.get("include_extraction") == "on",
        )
    except ApplicationError as exc:
        return job_page(request, job_id, share_error=exc.message)
    share_url = request.build_absolute_uri(reverse("share-page", kwargs={"token": token}))
    response = job_page(request, job_id, share_url=share_url)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@login_required
def share_revoke(request: HttpRequest, link_id: int) -> HttpResponse:
    try:
        share_link_revoke(scope=scope_of(request), link_id=link_id)
    except ApplicationError as exc:
        if isinstance(exc, NotFound):
            raise Http404(exc.message) from None
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Share link revoked."))
    job_id = request.POST.get("job", "")
    if job_id.isdigit():
        return redirect("portal-job", int(job_id))
    return redirect("portal-jobs")
