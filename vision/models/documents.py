"""Uploaded documents and the page images the model reads.

A Document is the file as uploaded (bytes kept verbatim, sha256 over them); its pages are the
images a job feeds the model: the upload itself for an ordinary image, an EXIF-rotated copy when the
camera stored the picture sideways, one PNG per frame of a multi-page TIFF, one rendered PNG per PDF
page. An XML e-invoice (CII or UBL) has no page image: its invoice job reads the XML itself. All paths are relative to the media storage (a folder or a bucket, vision/media.py), under `[<prefix>/]uploads/`, which no URL serves.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from vision.generation import SpecImage


class DocumentKind(models.TextChoices):
    IMAGE = "image", "Image"
    PDF = "pdf", "PDF"
    XML = "xml", "XML e-invoice"  # CII or UBL; no pages (vision.ocr.einvoice reads it)


class Document(models.Model):
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )  # who owns it; `owner` is the member who made it
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="documents")
    original_name = models.CharField(max_length=255)  # display only; never used in a path
    content_type = models.CharField(max_length=100)  # from libmagic, never from the client
    kind = models.CharField(max_length=10, choices=DocumentKind.choices)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    file = models.CharField(max_length=255)  # the upload as received, a media path (vision/media.py)
    page_count = models.PositiveIntegerField()
    # Under legal hold: retention never deletes it (vision.services.retention).
    legal_hold = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The same bytes uploaded twice in one organisation give the first document back.
            models.UniqueConstraint(fields=["organization", "sha256"], name="document_unique_org_sha256"),
        ]
        indexes = [models.Index(fields=["organization", "-created_at"], name="document_org_recent")]

    def __str__(self) -> str:
        return f"Document {self.pk} ({self.original_name})"

    def spec_images(self, pages: list[int] | None = None) -> list[SpecImage]:
        """The page images as GenerationSpec references, in page order (all pages, or `pages`)."""
        selected = self.pages.all() if pages is None else self.pages.filter(number__in=pages)
        return [SpecImage(path=page.file, sha256=page.sha256) for page in selected.order_by("number")]


class DocumentPage(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="pages")
    number = models.PositiveIntegerField()  # 1-based
    file = models.CharField(max_length=255)  # a media path (vision/media.py)
    sha256 = models.CharField(max_length=64)  # of the page file's bytes; the engine caches key on it
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()

    class Meta:
        ordering = ["document", "number"]
        constraints = [
            models.UniqueConstraint(fields=["document", "number"], name="document_page_unique_number"),
        ]

    def __str__(self) -> str:
        return f"Document {self.document_id} page {self.number}"
