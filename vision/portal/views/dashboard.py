"""The dashboard: the platform's state (workers, model, number formats, queue depth) and the
user's recent jobs and batches."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from vision.portal.selectors import platform_state
from vision.selectors import batch_list, job_list

RECENT = 8


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "portal/dashboard.html",
        {
            "state": platform_state(),
            "jobs": job_list(user=request.user)[:RECENT],
            "batches": batch_list(user=request.user)[:RECENT],
        },
    )
