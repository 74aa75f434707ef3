"""The organisation's audit trail for what is not a change of an extraction: who saw, downloaded
or exported what (ids, never contents). One trail: these are ExtractionEvent rows like the review
history, shares and deletions (vision.models.extractions)."""

from __future__ import annotations

from typing import Any

from vision.models import Extraction, ExtractionEvent, ExtractionEventAction


def audit_record(
    *,
    scope,
    action: ExtractionEventAction,
    document_id: int | None = None,
    extraction: Extraction | None = None,
    detail: dict[str, Any] | None = None,
) -> ExtractionEvent:
    return ExtractionEvent.objects.create(
        organization=scope.organization,
        actor=scope.user,
        action=action,
        document_id=document_id if document_id is not None else getattr(extraction, "document_id", None),
        extraction=extraction,
        detail=detail or {},
    )
