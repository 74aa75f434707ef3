"""Document types: what an `extract` job reads from a page, defined by an admin.

A DocumentType is a name, a slug (what uploads name), a JSON schema of its fields and an
instruction for the model. Each change of the schema or instruction makes a new numbered
DocumentTypeVersion; jobs pin the version they were submitted with and extractions point at the
version they were made with, so a later change never alters a stored result or how it is read.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class DocumentType(models.Model):
    # The organisation that defined it; null: site-wide, defined by site staff in the admin and
    # readable in every organisation. An organisation's own type of the same slug wins.
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50)
    # The current definition, copied into a DocumentTypeVersion each time it changes.
    schema = models.JSONField()
    instruction = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1)  # number of the current DocumentTypeVersion
    # Documents read as this type are deleted after this many days (overrides the organisation's
    # retention_days; vision.services.retention); null: the organisation's rule.
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="document_type_unique_org_slug"),
            models.UniqueConstraint(
                fields=["slug"],
                condition=models.Q(organization__isnull=True),
                name="document_type_unique_site_slug",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug} v{self.version})"


class DocumentTypeVersion(models.Model):
    """One frozen definition of a type. Never changed after creation."""

    document_type = models.ForeignKey(DocumentType, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    schema = models.JSONField()
    instruction = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["document_type", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["document_type", "number"], name="document_type_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.document_type.slug} v{self.number}"
