"""Portal pages (included at the site root by docplatform/urls.py)."""

from django.urls import path
from django.views.i18n import set_language

from vision.portal.views import batches, chat, dashboard, documents, jobs, keys, organization, review

urlpatterns = [
    path("", dashboard.dashboard, name="portal-home"),
    path("i18n/setlang/", set_language, name="set_language"),
    path("keys/", keys.keys, name="portal-keys"),
    path("keys/<int:key_id>/revoke/", keys.key_revoke, name="portal-key-revoke"),
    path("organization/", organization.organization, name="portal-organization"),
    path("organization/new/", organization.organization_new, name="portal-organization-new"),
    path("organization/switch/", organization.organization_switch, name="portal-organization-switch"),
    path("organization/members/add/", organization.member_add, name="portal-member-add"),
    path("organization/members/role/", organization.member_set_role, name="portal-member-role"),
    path("organization/members/remove/", organization.member_remove, name="portal-member-remove"),
    path("organization/audit.csv", organization.audit_csv, name="portal-organization-audit-csv"),
    path("upload/", jobs.upload, name="portal-upload"),
    path("jobs/", jobs.jobs, name="portal-jobs"),
    path("jobs/<int:job_id>/", jobs.job_detail, name="portal-job"),
    path("batches/", batches.batches, name="portal-batches"),
    path("batches/<int:batch_id>/", batches.batch_detail, name="portal-batch"),
    path(
        "documents/<int:document_id>/pages/<int:page>/", documents.document_page, name="portal-document-page"
    ),
    path(
        "documents/<int:document_id>/original/", documents.document_original, name="portal-document-original"
    ),
    path("chat/", chat.chat, name="portal-chat"),
    path("chat/<int:conversation_id>/", chat.chat, name="portal-chat-conversation"),
    path("chat/stream/", chat.chat_stream, name="portal-chat-stream"),
    path("review/", review.queue, name="portal-review"),
    path("review/<int:extraction_id>/", review.detail, name="portal-review-detail"),
    path("review/<int:extraction_id>/page/", review.page_image, name="portal-review-page"),
]
