"""extract jobs: the first selected page read (its PDF text layer, else OCR), then the VLM
constrained to the job's document type schema; the answer's values are located on the page
through the OCR lines, and the result is an Extraction awaiting review
(vision.services.extractions)."""

from __future__ import annotations

import json

from accounts.scope import Scope
from vision.engine.constraints import json_schema_constraint
from vision.generation import SpecImage, SpecMessage, SpecPart
from vision.models import JobStatus
from vision.runners.generation import generate, job_spec
from vision.runners.ocr import page_images, page_readings
from vision.runners.types import JobOutcome, JobRunContext
from vision.selectors import document_type_version_get
from vision.services.extractions import extraction_create_from_answer

# Confidence of a value the model wrote that the OCR saw nowhere on the page: a reviewer should
# look, as for an invoice field only the VLM found.
UNLOCATED_CONFIDENCE = 0.5


def run_extract(context: JobRunContext) -> JobOutcome:
    from jsonschema import validators

    from vision.engine import FinishReason
    from vision.ocr.fields import extract_prompt, locate_values
    from vision.ocr.layout import union as box_union

    job = context.job
    options = job.options or {}
    version = document_type_version_get(
        scope=Scope.system(job.organization),
        slug=options["document_type"],
        number=options["document_type_version"],
    )
    first = page_images(job)[:1]
    number, path, sha256, _ = first[0]
    ocr = page_readings(job, first)[0]  # the PDF's text layer where it is good, else OCR
    prompt = extract_prompt(instruction=version.instruction, schema=version.schema, ocr=ocr)
    constraint = json_schema_constraint(version.schema, name=version.document_type.slug)
    parts = [SpecPart(image=SpecImage(path, sha256)), SpecPart(text=prompt)]
    spec = job_spec(job, [SpecMessage("user", parts)])
    spec.constraint = constraint.to_dict()  # the answer is an object of the type's schema
    output = generate(context, spec)
    if output.finish_reason == FinishReason.CANCELLED:
        return JobOutcome(status=JobStatus.CANCELLED, error="Cancelled.", error_code="cancelled")
    if output.finish_reason in (FinishReason.ERROR, FinishReason.TIMEOUT):
        code = "deadline_exceeded" if output.finish_reason == FinishReason.TIMEOUT else "generation_failed"
        return JobOutcome(
            status=JobStatus.FAILED,
            error=f"The model could not read the document: {output.error}",
            error_code=code,
        )

    properties = version.schema.get("properties") or {}
    flags: list[dict[str, str]] = []
    try:
        answer = json.loads(output.text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        # Only an answer cut off before it was complete (max_tokens) gets here: constrained
        # decoding admits nothing else. The reviewer fills the fields in by hand.
        answer = {}
        flags.append(
            {
                "field": "*",
                "code": "answer_incomplete",
                "reason": f"the model's answer was cut off ({output.finish_reason.value}); fill the fields in",
            }
        )
    else:
        for error in validators.validator_for(version.schema)(version.schema).iter_errors(answer):
            where = ".".join(str(p) for p in error.path) or "*"
            flags.append({"field": where, "code": "schema_invalid", "reason": error.message})
    fields = {name: answer.get(name) for name in properties}
    boxes: dict[str, list[float] | None] = {}
    confidence: dict[str, float] = {}
    for where, located in locate_values(ocr, fields).items():
        boxes[where] = list(located.box) if located else None
        confidence[where] = located.confidence if located else UNLOCATED_CONFIDENCE
        if located is None:
            flags.append(
                {"field": where, "code": "not_on_page", "reason": "the value is nowhere in the OCR text"}
            )
    for name in properties:  # a top-level field's box: its own, or the union of its parts' boxes
        if name not in boxes:
            parts_boxes = [b for p, b in boxes.items() if p.startswith((f"{name}.", f"{name}[")) and b]
            union = box_union(parts_boxes)
            boxes[name] = list(union) if union else None
            parts = [confidence[p] for p in confidence if p.startswith((f"{name}.", f"{name}["))]
            confidence.setdefault(name, min(parts, default=UNLOCATED_CONFIDENCE))

    extraction = extraction_create_from_answer(
        document=job.document,
        version=version,
        fields=fields,
        boxes=boxes,
        confidence=confidence,
        flags=flags,
        page_size=(ocr.width, ocr.height),
        job=job,
        page=number,
    )
    from vision.inference import output_payload

    payload = output_payload(output)
    return JobOutcome(
        status=JobStatus.SUCCEEDED,
        text=output.text,
        result={
            "extraction_id": extraction.pk,
            "document_type": version.document_type.slug,
            "document_type_version": version.number,
            "page": number,
            "source": ocr.source,  # where the page's text came from: "text_layer" | "ocr"
            "fields": fields,
            "box": boxes,
            "confidence": confidence,
            "flags": flags,
        },
        finish_reason=output.finish_reason.value,
        usage=payload["usage"],
        timings={**payload["timings"], "ocr_s": round(ocr.elapsed_s, 3)},
    )
