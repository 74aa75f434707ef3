"""Extractions: created from an invoice reading (by the `invoice` job runner,
vision.runners.invoice, or the command line) or from a document type's answer (the `extract`
runner, vision.runners.extract), then corrected, approved or rejected by a reviewer (the
portal's review pages and the admin call these services).

Invoices are corrected by their own rules (dates, amounts, currency, the arithmetic checks);
a document type's fields by the schema of the version they were read with.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from docplatform.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from docplatform.storable import storable_json
from vision.models import (
    Document,
    DocumentTypeVersion,
    Extraction,
    ExtractionEvent,
    ExtractionEventAction,
    ExtractionStatus,
    Job,
)

if TYPE_CHECKING:
    from vision.ocr.pipeline import InvoiceReading

logger = logging.getLogger(__name__)

_META_KEYS = (
    "checks",
    "flags",
    "confidence",
    "box",
    "page",
    "field_pages",
    "used_vlm",
    "check_inputs",
    "sources",
)


def _event(extraction: Extraction, **fields: Any) -> ExtractionEvent:
    """An entry of the organisation's audit trail about this extraction."""
    return ExtractionEvent.objects.create(
        organization_id=extraction.organization_id,
        extraction=extraction,
        document_id=extraction.document_id,
        **fields,
    )


def _store(*, document: Document, job: Job | None, values: dict[str, Any]) -> Extraction:
    """Create the extraction, or replace the content of the job's earlier one (redelivery)."""
    with transaction.atomic():
        existing = Extraction.objects.select_for_update().filter(job=job).first() if job else None
        if existing is not None:
            for key, value in values.items():
                setattr(existing, key, value)
            existing.save()
            _event(existing, action=ExtractionEventAction.REEXTRACTED)
            return existing
        extraction = Extraction.objects.create(
            organization_id=document.organization_id, document=document, job=job, **values
        )
        _event(extraction, action=ExtractionEventAction.CREATED)
    logger.info(
        "extraction %s (%s) created for document %s: %d flags",
        extraction.pk,
        values["kind"],
        document.pk,
        len(values["flags"]),
    )
    return extraction


def extraction_create_from_answer(
    *,
    document: Document,
    version: DocumentTypeVersion,
    fields: dict[str, Any],
    boxes: dict[str, list[float] | None],
    confidence: dict[str, float],
    flags: list[dict[str, str]],
    page_size: tuple[int, int],
    job: Job | None = None,
    page: int = 1,
) -> Extraction:
    """Store a document type's answer as an Extraction awaiting review, tied to the type version
    it was read with. Idempotent on `job`, like invoices."""
    values = {
        "kind": version.document_type.slug,
        "document_type_version": version,
        "page": page,
        "page_width": page_size[0],
        "page_height": page_size[1],
        "fields": storable_json(fields),  # model output: no NUL (PostgreSQL)
        "boxes": boxes,
        "confidence": confidence,
        "checks": [],
        "flags": storable_json(flags),
        "used_vlm": True,
        "status": ExtractionStatus.AWAITING_REVIEW,
        "reviewer": None,
        "reviewed_at": None,
    }
    return _store(document=document, job=job, values=values)


def extraction_create_from_invoice(
    *, document: Document, reading: InvoiceReading, job: Job | None = None, page: int = 1
) -> Extraction:
    """Store an invoice reading as an Extraction awaiting review. Idempotent on `job`: a job that
    runs again (redelivery) replaces its extraction's content instead of adding a second one."""
    data = reading.to_dict()
    values = {
        "kind": "invoice",
        "page": page,
        "page_width": reading.ocr.width,
        "page_height": reading.ocr.height,
        # The VLM cross-check's values and reasons are model output: no NUL (PostgreSQL).
        "fields": storable_json({k: v for k, v in data.items() if k not in _META_KEYS}),
        # The review page draws boxes over the extraction's page; a field read on another page of
        # a multi-page invoice (totals on the last) keeps its value but no box there.
        "boxes": {k: box if data["field_pages"].get(k, 1) == 1 else None for k, box in data["box"].items()},
        "confidence": data["confidence"],
        "sources": data.get("sources") or {},  # e-invoices say: "xml" (vision.ocr.einvoice)
        "checks": storable_json(data["checks"]),
        "check_inputs": data["check_inputs"],
        "flags": storable_json(data["flags"]),
        "used_vlm": reading.used_vlm,
        "status": ExtractionStatus.AWAITING_REVIEW,
        "reviewer": None,
        "reviewed_at": None,
    }
    return _store(document=document, job=job, values=values)


def _check_reviewer(scope, extraction: Extraction):
    """The acting user, when the scope may review this extraction: a reviewer (or admin) of its
    organisation. Another organisation's extraction does not exist for the caller."""
    if extraction.organization_id != scope.organization.pk:
        raise NotFound("Extraction not found.")
    if not scope.can_review:
        raise PermissionDenied("Only reviewers can review extractions.")
    return scope.user


def _locked(extraction: Extraction) -> Extraction:
    locked = Extraction.objects.select_for_update().get(pk=extraction.pk)
    if locked.status != ExtractionStatus.AWAITING_REVIEW:
        raise Conflict(f"The extraction is already {locked.status}.")
    return locked


def _normalised(name: str, value: Any) -> Any:
    from vision.ocr.invoice_types import AMOUNT_FIELDS, DATE_FIELDS, SCALAR_FIELDS, json_value
    from vision.ocr.normalize import money, normalize_currency, parse_amount, parse_date

    if name == "items":
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            raise ValidationFailed("'items' must be a list of objects.")
        return [
            {
                "description": str(x.get("description") or ""),
                **{
                    k: json_value(
                        money(parse_amount(x.get(k))) if k != "quantity" else parse_amount(x.get(k))
                    )
                    for k in ("quantity", "unit_price", "amount")
                },
            }
            for x in value
        ]
    if name not in SCALAR_FIELDS:
        raise ValidationFailed(f"Unknown field {name!r}.")
    if value in (None, ""):
        return None
    if name in DATE_FIELDS:
        parsed = parse_date(str(value))
        if parsed is None:
            raise ValidationFailed(f"'{value}' is not a date.")
        return parsed.isoformat()
    if name in AMOUNT_FIELDS:
        amount = parse_amount(value)
        if amount is None:
            raise ValidationFailed(f"'{value}' is not an amount.")
        return json_value(money(amount))
    if name == "currency":
        code = normalize_currency(str(value))
        if code is None:
            raise ValidationFailed(f"'{value}' is not a currency code.")
        return code
    return str(value).strip()


def _typed_value(schema: dict[str, Any], name: str, value: Any) -> Any:
    """A reviewer's input for field `name` of a document type, as the JSON value its subschema
    accepts. The form sends text: it is taken as JSON when that fits the field (numbers,
    booleans, objects, lists, null), as the text itself otherwise; "" is null or "", whichever
    the field accepts."""
    import json

    from jsonschema import validators

    properties = schema.get("properties") or {}
    if name not in properties:
        raise ValidationFailed(f"Unknown field {name!r}.")
    # The field's subschema, with the root's definitions so its local $refs still resolve.
    field_schema = properties[name] if isinstance(properties[name], dict) else {}
    field_schema = {**{k: schema[k] for k in ("$defs", "definitions") if k in schema}, **field_schema}
    validator = validators.validator_for(schema)(field_schema)
    if not isinstance(value, str):
        candidates = [value]
    elif not value.strip():
        candidates = [None, ""]
    else:
        text = value.strip()
        try:
            candidates = [json.loads(text), text]
        except ValueError:
            candidates = [text]
    for candidate in candidates:
        if validator.is_valid(candidate):
            return candidate
    error = min(validator.iter_errors(candidates[-1]), key=lambda e: len(e.path))
    raise ValidationFailed(f"{name}: {error.message}")


def _recheck(fields: dict[str, Any], inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Every invoice check again, with the inputs the pipeline stored (rates, total in words):
    the same function the pipeline ran (vision.ocr.invoice_checks.invoice_checks)."""
    from vision.ocr.invoice_checks import checks_from_json

    return [
        {"name": c.name, "ok": c.ok, "expected": c.expected, "found": c.found, "fields": list(c.fields)}
        for c in checks_from_json(fields, inputs or {})
    ]


def _resolved_flags(
    flags: list[dict[str, Any]], checks: list[dict[str, Any]], field: str
) -> list[dict[str, Any]]:
    """The flags left after a reviewer edited `field`: a flag goes when it is about that field, or
    when it is a failed check's flag and that same check now passes. A check that still fails
    keeps its flags on the other fields, and a check that newly fails flags them."""
    passed = {c["name"] for c in checks if c["ok"]}
    kept = [
        f
        for f in flags
        if _top_field(f["field"]) != field and not (f["code"] == "check_failed" and _check_name(f) in passed)
    ]
    for check in checks:
        if check["ok"]:
            continue
        for name in check["fields"]:
            if _top_field(name) == field:
                continue
            if not any(
                f["code"] == "check_failed" and f["field"] == name and _check_name(f) == check["name"]
                for f in kept
            ):
                reason = f"{check['name']}: expected {check['expected']}, page says {check['found']}"
                kept.append({"field": name, "code": "check_failed", "reason": reason})
    return kept


def _check_name(flag: dict[str, Any]) -> str:
    return flag["reason"].split(":")[0]


def _top_field(path: str) -> str:
    """The top-level field a flag is about: `items[0].name` → `items`."""
    return path.split(".", 1)[0].split("[", 1)[0]


def extraction_update_field(*, extraction: Extraction, field: str, value: Any, scope) -> Extraction:
    """A reviewer's correction: the value is normalised like the pipeline's (invoices) or checked
    against the field's schema in the type version the extraction was read with, the invoice
    checks rerun, the field's confidence becomes 1 and its flags are resolved; the change is an
    event."""
    user = _check_reviewer(scope, extraction)
    version = extraction.document_type_version
    new_value = _typed_value(version.schema, field, value) if version else _normalised(field, value)
    with transaction.atomic():
        locked = _locked(extraction)
        old_value = locked.fields.get(field)
        locked.fields[field] = new_value
        locked.confidence[field] = 1.0
        if locked.sources:
            locked.sources[field] = "reviewer"
        if version:
            locked.checks = []
            locked.flags = [f for f in locked.flags if _top_field(f["field"]) != field]
        else:
            locked.checks = _recheck(locked.fields, locked.check_inputs)
            locked.flags = _resolved_flags(locked.flags, locked.checks, field)
        locked.save(update_fields=["fields", "confidence", "sources", "checks", "flags", "updated_at"])
        _event(
            locked,
            actor=user,
            action=ExtractionEventAction.FIELD_UPDATED,
            field=field,
            old_value=old_value,
            new_value=new_value,
        )
    return locked


def _review(
    extraction: Extraction, scope, status: ExtractionStatus, action: ExtractionEventAction, comment: str
) -> Extraction:
    user = _check_reviewer(scope, extraction)
    with transaction.atomic():
        locked = _locked(extraction)
        locked.status, locked.reviewer, locked.comment = status, user, comment
        locked.reviewed_at = timezone.now()
        locked.save(update_fields=["status", "reviewer", "comment", "reviewed_at", "updated_at"])
        _event(locked, actor=user, action=action, comment=comment)
    return locked


def extraction_approve(*, extraction: Extraction, scope, comment: str = "") -> Extraction:
    return _review(
        extraction, scope, ExtractionStatus.APPROVED, ExtractionEventAction.APPROVED, comment.strip()
    )


def extraction_reject(*, extraction: Extraction, scope, comment: str) -> Extraction:
    """Rejecting needs a reason: the uploader and later reviewers must see why."""
    if not comment.strip():
        raise ValidationFailed("Say why the extraction is rejected.")
    return _review(
        extraction, scope, ExtractionStatus.REJECTED, ExtractionEventAction.REJECTED, comment.strip()
    )
