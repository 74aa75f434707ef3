"""The dashboard: the platform's state (workers, model, number formats, queue depth) and the
user's recent jobs and batches."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.scope import scope_of
from vision.models import JobTask
from vision.portal.selectors import platform_state
from vision.selectors import batch_list, job_list

RECENT = 8
# The tasks whose availability the dashboard lists: the upload page's and chat.
DASHBOARD_TASKS = [JobTask.OCR, JobTask.INVOICE, JobTask.CAPTION, JobTask.VQA, JobTask.CHAT]


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    state = platform_state()
    return render(
        request,
        "portal/dashboard.html",
        {
            "state": state,
            "availability": state.tasks(DASHBOARD_TASKS),
            "jobs": job_list(scope=scope_of(request))[:RECENT],
            "batches": batch_list(scope=scope_of(request))[:RECENT],
        },
    )
