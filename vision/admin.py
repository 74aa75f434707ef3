"""Django admin for the vision app. Read-mostly: jobs and documents change through services."""

from django.contrib import admin

from vision.models import Batch, Document, DocumentPage, Job


class DocumentPageInline(admin.TabularInline):
    model = DocumentPage
    extra = 0
    can_delete = False
    readonly_fields = ["number", "width", "height", "sha256", "file"]


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["id", "original_name", "owner", "content_type", "page_count", "size", "created_at"]
    list_filter = ["kind", "content_type", "created_at"]
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
    list_filter = ["status", "task", "error_code", "created_at"]
    search_fields = ["id", "owner__username", "document__original_name", "worker", "error"]
    readonly_fields = [field.name for field in Job._meta.fields]
    list_select_related = ["owner", "document"]


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "owner", "created_at"]
    list_filter = ["task", "created_at"]
    search_fields = ["id", "owner__username"]
    readonly_fields = ["owner", "task", "options", "created_at"]
