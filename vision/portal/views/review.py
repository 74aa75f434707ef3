"""The reviewer queue (reviewers and admins only): extractions awaiting review, and one
extraction with its page image, each field's box, editable values, approve or reject with a
comment, and the audit trail. Every change goes through the extraction services."""

import json
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from accounts.scope import scope_of
from docplatform.errors import ApplicationError, NotFound
from vision.models import DocumentKind, Extraction, ExtractionStatus
from vision.portal.overlays import page_sources
from vision.portal.selectors import review_events, review_extraction_get, review_next_id, review_queue
from vision.portal.views.documents import document_file_response
from vision.services.extractions import extraction_approve, extraction_reject, extraction_update_field


def reviewer_required(view):
    """Reviewers and admins of the current organisation. Logged-out visitors go to the login
    page; a logged-in member gets the 403 page."""

    @wraps(view)
    def checked(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not scope_of(request).can_review:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return login_required(checked)


def _extraction(scope, extraction_id: int) -> Extraction:
    try:
        return review_extraction_get(scope=scope, extraction_id=extraction_id)
    except NotFound as exc:
        raise Http404(exc.message) from None


@reviewer_required
def queue(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or ExtractionStatus.AWAITING_REVIEW
    if status not in ExtractionStatus.values:
        status = ExtractionStatus.AWAITING_REVIEW
    page = Paginator(review_queue(scope=scope_of(request), status=status), 25).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "portal/review_queue.html",
        {"page": page, "extractions": page.object_list, "status": status, "statuses": ExtractionStatus},
    )


def _display(value: Any) -> str:
    """A field value as the reviewer edits it: "" for none, objects and lists as JSON (a
    document type's nested fields), other values as text."""
    if value is None:
        return ""
    if isinstance(value, dict | list | bool):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _editable_fields(extraction: Extraction) -> list[str]:
    """The fields the form edits: all of a document type's; an invoice's but its item table and
    an e-invoice's tax breakdown (shown as tables)."""
    if extraction.document_type_version_id:
        return list(extraction.fields)
    return [name for name in extraction.fields if name not in ("items", "tax_breakdown")]


@reviewer_required
def detail(request: HttpRequest, extraction_id: int) -> HttpResponse:
    extraction = _extraction(scope_of(request), extraction_id)
    error = ""
    if request.method == "POST":
        try:
            done = _apply(request, extraction)
        except ApplicationError as exc:
            error = exc.message
            extraction.refresh_from_db()
        else:
            if done is not None:
                return done
            return redirect("portal-review-detail", extraction_id=extraction.pk)
    fields = [
        {
            "name": name,
            # After a refused save the reviewer's input stays in the box, next to the error.
            "value": request.POST.get(f"field-{name}", _display(value)) if error else _display(value),
            "confidence": extraction.confidence.get(name),
            "box": extraction.boxes.get(name),
            "flags": [flag for flag in extraction.flags if flag.get("field") == name],
            "source": extraction.sources.get(name, ""),  # "xml": read from an e-invoice's XML
        }
        for name, value in extraction.fields.items()
        if name in _editable_fields(extraction)
    ]
    # Flags about the whole reading (field "*", e.g. vlm_unavailable, vlm_failed) or the tables
    # (items), not one of the form's fields.
    shown = {field["name"] for field in fields}
    page_flags = [flag for flag in extraction.flags if flag.get("field") not in shown]
    overlays = [
        {"page": 1, "kind": "field", "label": name, "box": box}
        for name, box in extraction.boxes.items()
        if isinstance(box, list) and len(box) == 4
    ]
    invoice_tables = {} if extraction.document_type_version_id else extraction.fields
    return render(
        request,
        "portal/review_detail.html",
        {
            "extraction": extraction,
            "fields": fields,
            "page_flags": page_flags,
            "items": [] if extraction.document_type_version_id else extraction.fields.get("items") or [],
            "tax_breakdown": invoice_tables.get("tax_breakdown") or [],
            # An XML e-invoice has no page image: the page view shows the invoice its XML holds.
            "einvoice": extraction.document.kind == DocumentKind.XML,
            "from_xml": bool(extraction.sources) and set(extraction.sources.values()) <= {"xml", "reviewer"},
            "document_type_version": extraction.document_type_version,
            "overlays": overlays,
            # where the page's text came from: its PDF text layer or OCR ("" when unknown)
            "page_source": page_sources(
                extraction.job.result if extraction.job else None, [extraction.page]
            ).get(extraction.page, ""),
            "events": review_events(extraction=extraction),
            "editable": extraction.status == ExtractionStatus.AWAITING_REVIEW,
            "error": error,
            "comment": request.POST.get("comment", ""),
        },
        status=400 if error else 200,
    )


def _apply(request: HttpRequest, extraction: Extraction) -> HttpResponse | None:
    """Save the changed fields, then approve or reject if asked; all or nothing."""
    action = request.POST.get("action", "save")
    comment = request.POST.get("comment", "")
    with transaction.atomic():
        changed = 0
        editable = _editable_fields(extraction)
        for name, current in list(extraction.fields.items()):
            key = f"field-{name}"
            if name not in editable or key not in request.POST:
                continue
            posted = request.POST[key].strip()
            if posted != _display(current).strip():
                extraction = extraction_update_field(
                    extraction=extraction, field=name, value=posted, scope=scope_of(request)
                )
                changed += 1
        if action == "approve":
            extraction = extraction_approve(extraction=extraction, scope=scope_of(request), comment=comment)
        elif action == "reject":
            extraction = extraction_reject(extraction=extraction, scope=scope_of(request), comment=comment)
    if action in ("approve", "reject"):
        note = _("Extraction %(id)s approved.") if action == "approve" else _("Extraction %(id)s rejected.")
        messages.success(request, note % {"id": extraction.pk})
        following = review_next_id(scope=scope_of(request), after=extraction)
        if following is not None and request.POST.get("next") == "1":
            return redirect("portal-review-detail", extraction_id=following)
        return redirect("portal-review")
    if changed:
        messages.success(request, _("%(n)s field(s) saved.") % {"n": changed})
    return None


@reviewer_required
def page_image(request: HttpRequest, extraction_id: int) -> HttpResponse:
    extraction = _extraction(scope_of(request), extraction_id)
    return document_file_response(document=extraction.document, page=extraction.page)
