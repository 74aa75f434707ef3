"""Share links: a signed, expiring, read-only link to one document, opened without an account.

The link's secret is shown once (like an API key) and only its SHA-256 is stored; the URL carries
the link's id and the secret, signed with the site's key (django.core.signing), so a tampered or
made-up link is refused before any lookup. Every open is an audit event (`share_opened`).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ShareLink(models.Model):
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    document = models.ForeignKey("vision.Document", on_delete=models.CASCADE, related_name="share_links")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    secret_hash = models.CharField(max_length=64, unique=True)
    include_extraction = models.BooleanField(default=False)  # show the document's extraction too
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    open_count = models.PositiveIntegerField(default=0)
    last_opened_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Share link {self.pk} of document {self.document_id}"
