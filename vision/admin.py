"""Django admin for the vision app. Read-mostly: jobs and documents change through services."""

from django import forms
from django.contrib import admin, messages

from accounts.roles import REVIEW_PERMISSION, Role
from accounts.scope import Scope
from docplatform.errors import ApplicationError
from vision.models import (
    Batch,
    Conversation,
    Document,
    DocumentPage,
    DocumentType,
    DocumentTypeVersion,
    Extraction,
    ExtractionEvent,
    Job,
    Message,
)
from vision.services.document_types import (
    RESERVED_SLUG,
    document_type_create,
    document_type_schema_check,
    document_type_update,
)
from vision.services.extractions import extraction_approve, extraction_reject


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent, never added, edited or deleted here (pages, messages,
    audit events, versions are written by the services)."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields


class DocumentPageInline(ReadOnlyInline):
    model = DocumentPage
    fields = ["number", "width", "height", "sha256", "file"]


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["id", "original_name", "owner", "content_type", "page_count", "size", "created_at"]
    list_filter = ["organization", "kind", "content_type", "created_at"]
    search_fields = ["original_name", "sha256", "owner__username"]
    readonly_fields = ["owner", "content_type", "kind", "size", "sha256", "file", "page_count", "created_at"]
    inlines = [DocumentPageInline]
    list_select_related = ["owner"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "task",
        "status",
        "owner",
        "document",
        "attempts",
        "worker",
        "created_at",
        "finished_at",
    ]
    list_filter = ["organization", "status", "task", "error_code", "created_at"]
    search_fields = ["id", "owner__username", "document__original_name", "worker", "error"]
    readonly_fields = [field.name for field in Job._meta.fields]
    list_select_related = ["owner", "document"]


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "owner", "created_at"]
    list_filter = ["organization", "task", "created_at"]
    search_fields = ["id", "owner__username"]
    readonly_fields = ["owner", "task", "options", "created_at"]


# --- conversations and extractions (the review queue) ---------------------------------------


class MessageInline(ReadOnlyInline):
    model = Message
    fields = ["position", "role", "text", "finish_reason", "prompt_tokens", "completion_tokens", "created_at"]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "owner", "model", "created_at", "updated_at"]
    list_filter = ["organization", "model", "created_at"]
    search_fields = ["title", "owner__username", "messages__text"]
    readonly_fields = ["owner", "key", "model", "created_at", "updated_at"]
    inlines = [MessageInline]
    list_select_related = ["owner"]


class ExtractionEventInline(ReadOnlyInline):
    model = ExtractionEvent
    fields = ["created_at", "actor", "action", "field", "old_value", "new_value", "comment"]


def _staff_scope(request, organization) -> Scope:
    """Site staff in the Django admin act in the organisation of the object they change, with
    what their site role's permissions allow (the admin is theirs across organisations)."""
    user = request.user
    role = (
        Role.ADMIN
        if user.is_superuser or user.has_perm("accounts.manage_users")  # the site admin role
        else Role.REVIEWER
        if user.has_perm(REVIEW_PERMISSION)
        else Role.MEMBER
    )
    return Scope(user=user, organization=organization, role=role)


def _review_action(modeladmin, request, queryset, *, service, verb: str, comment: str) -> None:
    done = 0
    for extraction in queryset:
        try:
            service(
                extraction=extraction, scope=_staff_scope(request, extraction.organization), comment=comment
            )
        except ApplicationError as exc:
            modeladmin.message_user(request, f"Extraction {extraction.pk}: {exc.message}", messages.ERROR)
        else:
            done += 1
    if done:
        modeladmin.message_user(request, f"{done} extraction(s) {verb}.", messages.SUCCESS)


@admin.action(description="Approve the selected extractions", permissions=["review"])
def approve_extractions(modeladmin, request, queryset) -> None:
    _review_action(modeladmin, request, queryset, service=extraction_approve, verb="approved", comment="")


@admin.action(description="Reject the selected extractions", permissions=["review"])
def reject_extractions(modeladmin, request, queryset) -> None:
    _review_action(
        modeladmin,
        request,
        queryset,
        service=extraction_reject,
        verb="rejected",
        comment=f"Rejected in the admin by {request.user.get_username()}.",
    )


@admin.register(Extraction)
class ExtractionAdmin(admin.ModelAdmin):
    """Corrections belong in the portal's review page (services keep the audit trail); here the
    list, filters and bulk approve/reject."""

    list_display = ["id", "document", "kind", "status", "flag_count", "reviewer", "created_at", "reviewed_at"]
    list_filter = ["organization", "status", "kind", "used_vlm", "created_at", "reviewed_at"]
    search_fields = [
        "id",
        "document__original_name",
        "document__owner__username",
        "reviewer__username",
        "comment",
    ]
    readonly_fields = [field.name for field in Extraction._meta.fields]
    inlines = [ExtractionEventInline]
    actions = [approve_extractions, reject_extractions]
    list_select_related = ["document", "reviewer"]

    @admin.display(description="flags")
    def flag_count(self, extraction: Extraction) -> int:
        return len(extraction.flags)

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm(REVIEW_PERMISSION)


@admin.register(ExtractionEvent)
class ExtractionEventAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "organization",
        "action",
        "document_id",
        "extraction",
        "field",
        "actor",
        "created_at",
    ]
    list_filter = ["organization", "action", "created_at"]
    search_fields = ["extraction__id", "field", "actor__username", "comment"]
    readonly_fields = [field.name for field in ExtractionEvent._meta.fields]
    list_select_related = ["extraction", "actor"]


# --- document types ------------------------------------------------------------------------------


class DocumentTypeForm(forms.ModelForm):
    class Meta:
        model = DocumentType
        fields = ["name", "slug", "schema", "instruction"]
        help_texts = {
            "schema": 'A JSON schema of an object, e.g. {"type": "object", "properties": {"total": '
            '{"type": "number"}}, "required": ["total"]}. Changing it makes a new version.',
            "instruction": "What the model is told before it reads the page.",
        }

    def clean_slug(self):
        slug = self.cleaned_data["slug"]
        if slug == RESERVED_SLUG:
            raise forms.ValidationError("'invoice' is the built-in invoice type; choose another slug.")
        return slug

    def clean_schema(self):
        try:
            return document_type_schema_check(self.cleaned_data["schema"])
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from None


class DocumentTypeVersionInline(ReadOnlyInline):
    model = DocumentTypeVersion
    fields = ["number", "created_at", "created_by", "schema", "instruction"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DocumentType)
class DocumentTypeAdmin(admin.ModelAdmin):
    """Defining and changing goes through the services: a new schema or instruction is a new
    version, and the earlier ones stay with the results made with them."""

    form = DocumentTypeForm
    list_display = ["name", "slug", "organization", "version", "updated_at"]
    list_filter = ["organization"]
    search_fields = ["name", "slug"]
    readonly_fields = ["version", "created_by", "created_at", "updated_at"]
    inlines = [DocumentTypeVersionInline]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "slug"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        if change:
            saved = document_type_update(
                document_type=obj,
                scope=_staff_scope(request, obj.organization),
                name=data["name"],
                schema=data["schema"],
                instruction=data["instruction"],
            )
        else:
            saved = document_type_create(
                scope=_staff_scope(request, None),  # the admin defines site-wide types
                name=data["name"],
                slug=data["slug"],
                schema=data["schema"],
                instruction=data["instruction"],
            )
        obj.pk, obj.version = saved.pk, saved.version
