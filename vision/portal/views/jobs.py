"""Upload (one file → a job, many → a batch), the job list and the job page."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

from accounts.scope import scope_of
from vision.models import DocumentKind, ExtractionEventAction, JobStatus, JobTask
from vision.portal.overlays import document_fields, invoice_fields, page_sources, result_overlays
from vision.portal.selectors import platform_state
from vision.portal.views import found_or_404
from vision.selectors import document_type_list, job_get, job_list, job_queue_position, share_link_list
from vision.services.audit import audit_record

# The engine's Timings (vision/engine/types.py), the OCR runner's and the wall-clock ones, in the
# order a job goes through them.
TIMING_LABELS = {
    "wait_s": _("Waited for a worker"),
    "queue_s": _("Queued in the engine"),
    "ocr_s": _("OCR"),
    "vision_s": _("Vision tower"),
    "prefill_s": _("Prefill"),
    "first_token_s": _("First token"),
    "decode_s": _("Decode"),
    "total_s": _("Engine total"),
    "run_s": _("Run time"),
}

# The tasks the upload page offers (chat has its own page); extract once a document type exists.
UPLOAD_TASKS = [JobTask.OCR, JobTask.INVOICE, JobTask.CAPTION, JobTask.VQA]


@login_required
def upload(request: HttpRequest) -> HttpResponse:
    document_types = list(document_type_list(scope=scope_of(request)))
    state = platform_state()
    return render(
        request,
        "portal/upload.html",
        {
            "document_types": document_types,
            "state": state,
            # Which tasks can run now and why the others cannot; the task choice comes from it.
            "availability": state.tasks([*UPLOAD_TASKS, JobTask.EXTRACT] if document_types else UPLOAD_TASKS),
            "max_bytes": settings.UPLOAD_MAX_BYTES,
            "max_files": settings.BATCH_MAX_FILES,
        },
    )


@login_required
def jobs(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or None
    if status not in JobStatus.values:
        status = None
    page = Paginator(job_list(scope=scope_of(request), status=status), 25).get_page(request.GET.get("page"))
    return render(
        request, "portal/jobs.html", {"page": page, "jobs": page.object_list, "status": status or ""}
    )


@login_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    return job_page(request, job_id)


def job_page(request: HttpRequest, job_id: int, **extra) -> HttpResponse:
    """The job page; `extra` goes into its context (the share form's answer, vision/portal/views/sharing.py)."""
    scope = scope_of(request)
    job = found_or_404(job_get, scope=scope, job_id=job_id)
    if job.document_id and request.method == "GET":
        audit_record(scope=scope, action=ExtractionEventAction.VIEWED, document_id=job.document_id)
    pages = list(job.document.pages.all()) if job.document else []
    wanted = (job.options or {}).get("pages")
    if wanted:
        pages = [page for page in pages if page.number in wanted]
    sources = page_sources(job.result, [page.number for page in pages])
    for page in pages:
        page.source = sources.get(page.number, "")  # "text_layer" | "ocr" | "" (not read)
    timings = dict(job.timings or {})
    if job.started_at:
        timings["wait_s"] = (job.started_at - job.created_at).total_seconds()
    if job.started_at and job.finished_at:
        timings["run_s"] = (job.finished_at - job.started_at).total_seconds()
    return render(
        request,
        "portal/job.html",
        {
            "job": job,
            "pages": pages,
            # An XML e-invoice has no page: the job page draws what its XML holds instead.
            "einvoice": bool(job.document) and job.document.kind == DocumentKind.XML,
            "overlays": result_overlays(job.result),
            "fields": document_fields(job.result)
            if job.task == JobTask.EXTRACT
            else invoice_fields(job.result),
            "timings": [
                (TIMING_LABELS.get(name, name), seconds)
                for name, seconds in sorted(timings.items(), key=lambda kv: _timing_order(kv[0]))
                if isinstance(seconds, int | float)
            ],
            "queue_position": job_queue_position(job=job),
            "progress_percent": _percent(job),
            # The document's live share links, with the form that makes one.
            "share_links": list(share_link_list(scope=scope, document=job.document, active=True))
            if job.document
            else [],
            "share_default_days": settings.SHARE_LINK_DEFAULT_DAYS,
            "share_max_days": settings.SHARE_LINK_MAX_DAYS,
            **extra,
        },
    )


def _timing_order(name: str) -> int:
    order = list(TIMING_LABELS)
    return order.index(name) if name in order else len(order)


def _percent(job) -> int:
    if job.status == JobStatus.SUCCEEDED:
        return 100
    return min(99, round(100 * job.progress_tokens / job.max_tokens)) if job.max_tokens else 0
