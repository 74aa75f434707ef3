"""/api routes of the vision app: documents and their share links, jobs, batches, document types. (/v1 has its own urls module.)"""

from django.urls import path

from vision.apis import batches, document_types, documents, jobs, sharing

urlpatterns = [
    path("documents", documents.DocumentListCreateApi.as_view(), name="document-list"),
    path("documents/<int:document_id>", documents.DocumentDetailApi.as_view(), name="document-detail"),
    path(
        "documents/<int:document_id>/share-links",
        sharing.DocumentShareLinkListCreateApi.as_view(),
        name="document-share-links",
    ),
    path("share-links/<int:link_id>", sharing.ShareLinkDetailApi.as_view(), name="share-link-detail"),
    path("jobs", jobs.JobListCreateApi.as_view(), name="job-list"),
    path("jobs/<int:job_id>", jobs.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/cancel", jobs.JobCancelApi.as_view(), name="job-cancel"),
    path("batches", batches.BatchListCreateApi.as_view(), name="batch-list"),
    path("batches/<int:batch_id>", batches.BatchDetailApi.as_view(), name="batch-detail"),
    path("batches/<int:batch_id>/export", batches.BatchExportApi.as_view(), name="batch-export"),
    path("document-types", document_types.DocumentTypeListCreateApi.as_view(), name="document-type-list"),
    path(
        "document-types/<slug:slug>",
        document_types.DocumentTypeDetailUpdateApi.as_view(),
        name="document-type-detail",
    ),
    path(
        "document-types/<slug:slug>/versions/<int:number>",
        document_types.DocumentTypeVersionDetailApi.as_view(),
        name="document-type-version",
    ),
]
