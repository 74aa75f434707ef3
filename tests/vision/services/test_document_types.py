"""Document types and their extractions, without a worker: versions (a schema change never
alters a stored result or how it is corrected), review actions on a type's fields, and the
OCR box matching of an answer's values."""

from __future__ import annotations

import pytest

from accounts.roles import Role
from accounts.scope import scope_for
from docplatform.errors import PermissionDenied, ValidationFailed
from tests.conftest import stored_document
from tests.vision.ocr.test_invoice import _page
from vision.models import DocumentTypeVersion, ExtractionStatus, Job
from vision.ocr.fields import locate_values, value_paths
from vision.services.document_types import document_type_create, document_type_update
from vision.services.extractions import (
    extraction_approve,
    extraction_create_from_answer,
    extraction_reject,
    extraction_update_field,
)
from vision.services.jobs import job_options_validate

pytestmark = pytest.mark.django_db

V1 = {
    "type": "object",
    "properties": {
        "merchant": {"type": "string"},
        "total": {"type": "number", "minimum": 0},
        "lines": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "paid_with": {"enum": ["cash", "card"]},
    },
}
V2 = {"type": "object", "properties": {"merchant": {"type": "string"}, "total": {"type": "string"}}}


@pytest.fixture
def user_factory(user_factory, team):
    """Everyone here works in one team organisation, as reviewers and uploaders do."""
    return lambda role=Role.MEMBER, **kwargs: user_factory(role, organization=team, **kwargs)


@pytest.fixture
def admin(user_factory):
    return user_factory(Role.ADMIN)


@pytest.fixture
def receipt(admin):
    return document_type_create(
        scope=scope_for(admin), name="Receipt", slug="receipt", schema=V1, instruction="Read it."
    )


@pytest.fixture
def document(user_factory):
    return stored_document(user_factory(), "r.png")


def _extraction(document, version, fields):
    return extraction_create_from_answer(
        document=document,
        version=version,
        fields=fields,
        boxes={},
        confidence={},
        flags=[],
        page_size=(10, 10),
    )


def test_only_admins_define_and_change(receipt, user_factory) -> None:
    for role in (Role.MEMBER, Role.REVIEWER):
        with pytest.raises(PermissionDenied):
            document_type_create(scope=scope_for(user_factory(role)), name="X", slug="x", schema=V1)
        with pytest.raises(PermissionDenied):
            document_type_update(document_type=receipt, scope=scope_for(user_factory(role)), schema=V2)


def test_a_schema_change_never_alters_stored_results(receipt, admin, document, user_factory) -> None:
    v1 = receipt.versions.get(number=1)
    stored = _extraction(document, v1, {"merchant": "Kiosk", "total": 3.5, "lines": [], "paid_with": "cash"})
    job_options, _ = job_options_validate(
        scope=scope_for(admin), task="extract", options={"document_type": "receipt"}
    )
    assert job_options == {"document_type": "receipt", "document_type_version": 1}

    changed = document_type_update(
        document_type=receipt, scope=scope_for(admin), schema=V2, instruction="New."
    )
    assert changed.version == 2
    same = document_type_update(
        document_type=changed, scope=scope_for(admin), schema=V2
    )  # no change, no version
    assert same.version == 2 and DocumentTypeVersion.objects.filter(document_type=receipt).count() == 2

    stored.refresh_from_db()
    assert stored.document_type_version == v1
    assert stored.fields == {"merchant": "Kiosk", "total": 3.5, "lines": [], "paid_with": "cash"}
    assert DocumentTypeVersion.objects.get(pk=v1.pk).schema == V1  # the version itself is frozen
    # Corrections follow the version the extraction was read with: v1's total is a number.
    reviewer = user_factory(Role.REVIEWER)
    with pytest.raises(ValidationFailed):
        extraction_update_field(extraction=stored, field="total", value="twelve", scope=scope_for(reviewer))
    assert (
        extraction_update_field(
            extraction=stored, field="total", value="12.5", scope=scope_for(reviewer)
        ).fields["total"]
        == 12.5
    )
    # A job queued before the change still reads with the version it was submitted with.
    job = Job.objects.create(
        organization=scope_for(document.owner).organization,
        owner=document.owner,
        document=document,
        task="extract",
        options=job_options,
        max_tokens=8,
    )
    assert job.options["document_type_version"] == 1
    assert (
        job_options_validate(scope=scope_for(admin), task="extract", options={"document_type": "receipt"})[0][
            "document_type_version"
        ]
        == 2
    )


def test_review_of_a_type_corrects_approves_rejects_with_an_audit_trail(
    receipt, document, user_factory
) -> None:
    v1 = receipt.versions.get(number=1)
    extraction = extraction_create_from_answer(
        document=document,
        version=v1,
        fields={"merchant": "Ki0sk", "total": 3.5, "lines": ["tea"], "paid_with": "cash"},
        boxes={"merchant": [1, 2, 3, 4]},
        confidence={"merchant": 0.9},
        page_size=(10, 10),
        flags=[{"field": "lines[0]", "code": "not_on_page", "reason": "nowhere"}],
    )
    assert extraction.kind == "receipt" and extraction.status == ExtractionStatus.AWAITING_REVIEW
    reviewer = user_factory(Role.REVIEWER)
    with pytest.raises(PermissionDenied):
        extraction_update_field(
            extraction=extraction, field="merchant", value="Kiosk", scope=scope_for(user_factory())
        )
    extraction = extraction_update_field(
        extraction=extraction, field="merchant", value="Kiosk", scope=scope_for(reviewer)
    )
    extraction = extraction_update_field(
        extraction=extraction, field="lines", value='["tea", "cake"]', scope=scope_for(reviewer)
    )
    assert extraction.fields["lines"] == ["tea", "cake"] and extraction.flags == []  # the lines flag resolved
    for bad_field, bad_value in (
        ("paid_with", "cheque"),
        ("lines", '["a","b","c","d"]'),
        ("total", "-1"),
        ("nope", "x"),
    ):
        with pytest.raises(ValidationFailed):
            extraction_update_field(
                extraction=extraction, field=bad_field, value=bad_value, scope=scope_for(reviewer)
            )
    assert (
        extraction_update_field(
            extraction=extraction, field="paid_with", value="card", scope=scope_for(reviewer)
        ).fields["paid_with"]
        == "card"
    )
    approved = extraction_approve(extraction=extraction, scope=scope_for(reviewer), comment="fine")
    assert approved.status == ExtractionStatus.APPROVED
    events = [(e.action, e.field, e.old_value, e.new_value) for e in approved.events.all()]
    assert events == [
        ("created", "", None, None),
        ("field_updated", "merchant", "Ki0sk", "Kiosk"),
        ("field_updated", "lines", ["tea"], ["tea", "cake"]),
        ("field_updated", "paid_with", "cash", "card"),
        ("approved", "", None, None),
    ]
    other = _extraction(document, v1, {"merchant": "X", "total": 1, "lines": [], "paid_with": None})
    with pytest.raises(ValidationFailed):
        extraction_reject(extraction=other, scope=scope_for(reviewer), comment=" ")
    assert (
        extraction_reject(extraction=other, scope=scope_for(reviewer), comment="blurred").status
        == ExtractionStatus.REJECTED
    )


def test_string_values_are_found_on_the_page() -> None:
    ocr = _page(
        [("KESTREL TOOLS LLC", 60, 400)],
        [("Order No: PO-4471", 640, 1000)],
        [("Total:", 640, 800), ("1,210.00", 900, 1040)],
    )
    answer = {
        "seller": "Kestrel Tools LLC",
        "order": {"number": "PO-4471"},
        "total": "1,210.00",
        "note": "absent",
        "n": 7,
    }
    assert [p for p, _ in value_paths(answer)] == ["seller", "order.number", "total", "note", "n"]
    found = locate_values(ocr, answer)
    assert found["seller"].box == (60, 40, 400, 68)  # case folded, the whole line
    x0, _, x1, _ = found["order.number"].box
    assert 640 < x0 < x1 <= 1000  # the value's part of its line, not the label
    assert found["total"].box == (900, 140, 1040, 168)
    assert found["note"] is None and found["n"] is None  # nowhere on the page / one character


def test_corrections_are_read_as_the_field_accepts(admin, document, user_factory) -> None:
    schema = {
        "$defs": {"code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]$"}},
        "type": "object",
        "properties": {
            "code": {"$ref": "#/$defs/code"},
            "grade": {"enum": [1, 2, "x"]},
            "note": {"type": ["string", "null"]},
            "label": {"type": "string"},
        },
    }
    delivery = document_type_create(scope=scope_for(admin), name="Delivery", slug="delivery", schema=schema)
    extraction = _extraction(
        document, delivery.versions.get(), {"code": None, "grade": None, "note": "a", "label": "b"}
    )
    reviewer = user_factory(Role.REVIEWER)

    def fix(field, value):
        return extraction_update_field(
            extraction=extraction, field=field, value=value, scope=scope_for(reviewer)
        ).fields[field]

    assert fix("code", "AB1") == "AB1"  # the local $ref resolves
    with pytest.raises(ValidationFailed, match="code"):
        fix("code", "ab1")
    assert (fix("grade", "2"), fix("grade", "x")) == (2, "x")
    assert (fix("note", ""), fix("label", ""), fix("label", "12"), fix("label", "true")) == (
        None,
        "",
        "12",
        "true",
    )
