"""Extractions: the structured reading of a document (invoice fields) that a reviewer checks.

An Extraction holds what the pipeline found (values, where on the page, how sure, which
arithmetic checks passed, why it was flagged) and the review's outcome. Every change after
creation is an ExtractionEvent, so the reviewer UI can show who changed what and when.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ExtractionStatus(models.TextChoices):
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class Extraction(models.Model):
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )  # its document's
    document = models.ForeignKey("vision.Document", on_delete=models.CASCADE, related_name="extractions")
    # The job that produced it; one extraction per job, so a redelivered job updates, never doubles.
    job = models.OneToOneField(
        "vision.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="extraction"
    )
    kind = models.CharField(max_length=50, default="invoice")  # "invoice", or the document type's slug
    # The document type version it was read with (null for invoices, the built-in type): its
    # schema decides how fields are corrected, whatever the type looks like today.
    document_type_version = models.ForeignKey(
        "vision.DocumentTypeVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    page = models.PositiveIntegerField(default=1)  # the document page read (1-based)
    page_width = models.PositiveIntegerField(default=0)  # pixels the boxes refer to
    page_height = models.PositiveIntegerField(default=0)
    # Field name → JSON value (ISO dates, amounts as decimal strings); "items" is a list.
    fields = models.JSONField(default=dict)
    boxes = models.JSONField(default=dict)  # field name → [x0, y0, x1, y1] on the page, or null
    confidence = models.JSONField(default=dict)  # field name → 0..1
    # Field name → how its value was read, where the reading says: "xml" for an e-invoice's XML
    # (vision.ocr.einvoice), "reviewer" once corrected; empty for readings that do not say.
    sources = models.JSONField(default=dict)
    checks = models.JSONField(default=list)  # [{name, ok, expected, found, fields}]
    flags = models.JSONField(default=list)  # [{field, code, reason}]: why a reviewer should look
    # What the checks read besides the fields (the tax rates printed beside the tax, a fapiao's
    # total in words): {"rates": ["0.20"], "words_total": "1200.00"}. A correction reruns every
    # check from the fields and these, so no check is lost when a reviewer edits another field.
    check_inputs = models.JSONField(default=dict)
    used_vlm = models.BooleanField(default=False)  # whether the VLM cross-check ran

    status = models.CharField(
        max_length=20, choices=ExtractionStatus.choices, default=ExtractionStatus.AWAITING_REVIEW
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    comment = models.TextField(blank=True)  # the reviewer's, with an approval or a rejection
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="extraction_status_created"),
            models.Index(fields=["organization", "status", "created_at"], name="extraction_org_status"),
        ]

    def __str__(self) -> str:
        return f"Extraction {self.pk} ({self.kind}, {self.status})"

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    @property
    def vlm_unavailable(self) -> bool:
        """Read by the layout extractor alone: no vision-language model was there to cross-check
        it (the flag the invoice runner adds, vision.runners.invoice)."""
        return any(flag.get("code") == "vlm_unavailable" for flag in self.flags)


class ExtractionEventAction(models.TextChoices):
    CREATED = "created", "Created"
    REEXTRACTED = "reextracted", "Re-extracted"  # the job ran again (redelivery) and replaced it
    FIELD_UPDATED = "field_updated", "Field updated"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    # What happened to the document besides its extraction: the organisation's audit trail.
    VIEWED = "viewed", "Viewed"
    DOWNLOADED = "downloaded", "Downloaded"
    EXPORTED = "exported", "Exported"
    SHARED = "shared", "Shared"
    SHARE_REVOKED = "share_revoked", "Share link revoked"
    SHARE_OPENED = "share_opened", "Share link opened"
    DELETED = "deleted", "Deleted"
    RETENTION_DELETED = "retention_deleted", "Deleted by retention"


# Actions about the document as a whole, not shown in an extraction's review history.
DOCUMENT_ACTIONS = frozenset(
    {
        ExtractionEventAction.VIEWED,
        ExtractionEventAction.DOWNLOADED,
        ExtractionEventAction.EXPORTED,
        ExtractionEventAction.SHARED,
        ExtractionEventAction.SHARE_REVOKED,
        ExtractionEventAction.SHARE_OPENED,
        ExtractionEventAction.DELETED,
        ExtractionEventAction.RETENTION_DELETED,
    }
)


class ExtractionEvent(models.Model):
    """One entry of the organisation's audit trail: who saw, changed, approved, exported, shared or
    deleted what. One trail: an extraction's review history is its events with an extraction; a
    document's view, download, share or deletion is an event with the document's id (kept as a
    number, so the entry outlives the document; ids, never contents)."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    extraction = models.ForeignKey(
        Extraction, on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    document_id = models.PositiveBigIntegerField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)  # ids and names, e.g. {"share_link": 3}
    actor = models.ForeignKey(  # null: the pipeline
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=20, choices=ExtractionEventAction.choices)
    field = models.CharField(max_length=50, blank=True)  # for field_updated
    old_value = models.JSONField(null=True, blank=True)
    new_value = models.JSONField(null=True, blank=True)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["organization", "created_at"], name="event_org_created")]

    def __str__(self) -> str:
        return f"{self.action} on extraction {self.extraction_id}"
