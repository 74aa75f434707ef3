"""Document types end to end through the real worker on the tiny random checkpoint
(scripts/test.sh): an upload with task=extract runs OCR and the model constrained to the type's
schema; the stored answer validates against that schema (random weights, so only the constraint
can make it), values are boxed through the OCR lines, the result is an Extraction awaiting
review tied to the type version, and a batch of them exports the reviewed fields."""

from __future__ import annotations

import csv
import io
import json

import jsonschema
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.roles import Role
from accounts.scope import scope_for
from tests.vision.jobs_helpers import wait_finished, wait_status
from tests.vision.ocr.invoices import encode, make_invoice
from vision.models import Extraction, ExtractionStatus
from vision.services.extractions import extraction_approve, extraction_update_field

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def user_factory(user_factory, team):
    """Uploaders, admins and reviewers of one team organisation, as a team works."""
    return lambda role=Role.MEMBER, **kwargs: user_factory(role, organization=team, **kwargs)


def purchase_order_schema(order_number: str) -> dict:
    # Bounded strings and numbers: random weights never close a string on their own. The order
    # number can only be the one on the page, so its box must be found through the OCR lines.
    return {
        "type": "object",
        "properties": {
            "order_number": {"enum": [order_number]},
            "supplier": {"type": "string", "maxLength": 12},
            "total": {"type": "number", "minimum": 0, "maximum": 100000},
            "urgent": {"type": "boolean"},
            "lines": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2},
        },
        "required": ["order_number", "supplier", "total", "urgent", "lines"],
        "additionalProperties": False,
    }


def _invoice_upload(seed: int, name: str = "po.png"):
    image, truth = make_invoice(seed, "en")
    image = image.resize((image.width // 2, image.height // 2))
    return SimpleUploadedFile(name, encode(image, "PNG"), content_type="image/png"), truth


def _define(api_client, user_factory, schema: dict) -> None:
    api_client.force_authenticate(user_factory(Role.ADMIN))
    response = api_client.post(
        "/api/document-types",
        {
            "name": "Purchase order",
            "slug": "purchase-order",
            "schema": schema,
            "instruction": "Read the order.",
        },
        format="json",
    )
    assert response.status_code == 201, response.content


def test_an_extract_job_answers_in_the_type_schema_and_awaits_review(
    api_client, user_factory, redis_url
) -> None:
    upload, truth = _invoice_upload(71)
    schema = purchase_order_schema(truth.invoice_number)
    _define(api_client, user_factory, schema)
    member = user_factory()
    api_client.force_authenticate(member)
    response = api_client.post(
        "/api/jobs",
        {"task": "extract", "document_type": "purchase-order", "file": upload, "max_tokens": 200},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    assert response.json()["options"] == {"document_type": "purchase-order", "document_type_version": 1}
    done = wait_finished(api_client, response.json()["status_url"], timeout=300)
    assert done["status"] == "succeeded", done
    assert done["result"]["finish_reason"] == "stop", done

    answer = json.loads(done["result"]["text"])
    jsonschema.validate(answer, schema)  # the stored answer, as the model wrote it
    data = done["result"]["data"]
    assert data["fields"] == answer and (data["document_type"], data["document_type_version"]) == (
        "purchase-order",
        1,
    )
    extraction = Extraction.objects.get(pk=data["extraction_id"], job_id=done["id"])
    assert extraction.status == ExtractionStatus.AWAITING_REVIEW and extraction.kind == "purchase-order"
    assert extraction.document_type_version.number == 1 and extraction.fields == answer
    jsonschema.validate(extraction.fields, extraction.document_type_version.schema)
    assert answer["order_number"] == truth.invoice_number
    box = extraction.boxes["order_number"]  # found on the page through the OCR lines
    assert (
        box
        and 0 <= box[0] < box[2] <= extraction.page_width
        and 0 <= box[1] < box[3] <= extraction.page_height
    )
    from vision.ocr.fields import value_paths

    unlocated = {f["field"] for f in extraction.flags if f["code"] == "not_on_page"}
    for path, _ in value_paths(answer):  # every value is either boxed or flagged for the reviewer
        assert (extraction.boxes[path] is None) == (path in unlocated), (path, extraction.boxes, unlocated)


def test_the_answer_is_unconstrained_garbage_without_the_schema(api_client, user_factory, redis_url) -> None:
    """The same page and prompt as a plain vqa job: the random model's free text is not an
    answer in the schema, so the constraint is what makes the extract answer valid."""
    upload, truth = _invoice_upload(71)
    from vision.ocr.engine import OcrResult
    from vision.ocr.fields import extract_prompt

    prompt = extract_prompt(
        instruction="Read the order.", schema=purchase_order_schema(truth.invoice_number), ocr=OcrResult(1, 1)
    )
    api_client.force_authenticate(user_factory())
    response = api_client.post(
        "/api/jobs", {"task": "vqa", "question": prompt, "file": upload, "max_tokens": 60}, format="multipart"
    )
    done = wait_finished(api_client, response.json()["status_url"], timeout=300)
    assert done["status"] == "succeeded", done
    try:
        jsonschema.validate(json.loads(done["result"]["text"]), purchase_order_schema(truth.invoice_number))
    except (ValueError, jsonschema.ValidationError):
        return
    pytest.fail(f"free text validated by chance: {done['result']['text']!r}")


def test_a_batch_of_extractions_exports_the_reviewed_fields(api_client, user_factory, redis_url) -> None:
    first, truth = _invoice_upload(72, "a.png")
    second, _ = _invoice_upload(73, "b.png")
    _define(api_client, user_factory, purchase_order_schema(truth.invoice_number))
    member = user_factory()
    api_client.force_authenticate(member)
    response = api_client.post(
        "/api/batches",
        {"task": "extract", "document_type": "purchase-order", "files": [first, second], "max_tokens": 200},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    batch = wait_status(api_client, response.json()["status_url"], {"finished"}, timeout=400)
    assert batch["progress"]["succeeded"] == 2, batch

    extraction = Extraction.objects.get(job__batch_id=batch["id"], document__original_name="a.png")
    reviewer = user_factory(Role.REVIEWER)
    extraction = extraction_update_field(
        extraction=extraction, field="supplier", value="Kestrel", scope=scope_for(reviewer)
    )
    extraction_approve(extraction=extraction, scope=scope_for(reviewer))

    exported = api_client.get(f"/api/batches/{batch['id']}/export?format=csv")
    assert exported.status_code == 200
    rows = {row["file_name"]: row for row in csv.DictReader(io.StringIO(exported.content.decode()))}
    assert set(rows) == {"a.png", "b.png"}
    assert rows["a.png"]["document_type"] == "purchase-order v1"
    assert rows["a.png"]["extraction_status"] == "approved"
    assert json.loads(rows["a.png"]["fields"])["supplier"] == "Kestrel"  # the correction, not the model's
    assert rows["b.png"]["extraction_status"] == "awaiting_review"
    jsonschema.validate(json.loads(rows["b.png"]["fields"]), purchase_order_schema(truth.invoice_number))
    as_json = api_client.get(f"/api/batches/{batch['id']}/export?format=json").json()
    assert {row["extraction_id"] for row in as_json["rows"]} == set(
        Extraction.objects.filter(job__batch_id=batch["id"]).values_list("pk", flat=True)
    )
