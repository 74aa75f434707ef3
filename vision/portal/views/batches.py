"""Batches: the list with progress bars, and one batch with per-file status and exports."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.scope import scope_of
from vision.portal.views import found_or_404
from vision.selectors import batch_counts, batch_get, batch_jobs, batch_list


@login_required
def batches(request: HttpRequest) -> HttpResponse:
    page = Paginator(batch_list(scope=scope_of(request)), 20).get_page(request.GET.get("page"))
    rows = [(batch, batch_counts(batch=batch)) for batch in page.object_list]
    return render(request, "portal/batches.html", {"page": page, "rows": rows})


@login_required
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = found_or_404(batch_get, scope=scope_of(request), batch_id=batch_id)
    return render(
        request,
        "portal/batch.html",
        {"batch": batch, "counts": batch_counts(batch=batch), "jobs": batch_jobs(batch=batch)},
    )
