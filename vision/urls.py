"""/api routes of the vision app: documents, jobs, batches. (/v1 has its own urls module.)"""

from django.urls import path

from vision.apis import batches, documents, jobs

urlpatterns = [
    path("documents", documents.DocumentListCreateApi.as_view(), name="document-list"),
    path("documents/<int:document_id>", documents.DocumentDetailApi.as_view(), name="document-detail"),
    path("jobs", jobs.JobListCreateApi.as_view(), name="job-list"),
    path("jobs/<int:job_id>", jobs.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/cancel", jobs.JobCancelApi.as_view(), name="job-cancel"),
    path("batches", batches.BatchListCreateApi.as_view(), name="batch-list"),
    path("batches/<int:batch_id>", batches.BatchDetailApi.as_view(), name="batch-detail"),
    path("batches/<int:batch_id>/export", batches.BatchExportApi.as_view(), name="batch-export"),
]
