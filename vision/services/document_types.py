"""Document types: an admin defines or changes one (the API and the Django admin call these);
`extract` jobs read pages with it (vision.runners.extract).

The schema is checked before anything is stored: it must be a JSON schema of an object with
named fields, that constrained decoding can enforce (the same checker `/v1` response_format
uses, `vision.engine.constraints.json_schema_constraint`), within its size and depth bounds. A change of the schema or
the instruction makes a new version; the old one stays, with every result made with it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from docplatform.errors import PermissionDenied, ValidationFailed
from vision.engine.constraints import UnsupportedConstraint, json_schema_constraint
from vision.models import DocumentType, DocumentTypeVersion

logger = logging.getLogger(__name__)

MAX_INSTRUCTION_CHARS = 4_000
RESERVED_SLUG = "invoice"  # the built-in type, with its own pipeline and arithmetic checks
# Field names become review-form keys and export columns: keep them plain.
FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,49}$"


def document_type_schema_check(schema: Any) -> dict[str, Any]:
    """The schema if an extract job can be constrained to it; else ValidationFailed saying which
    keyword at which path (a JSON pointer) is the problem."""
    import re

    from jsonschema import SchemaError, validators

    if not isinstance(schema, dict):
        raise ValidationFailed("The schema must be a JSON object.", extra={"path": "#"})
    if (
        schema.get("type") != "object"
        or not isinstance(schema.get("properties"), dict)
        or not schema["properties"]
    ):
        raise ValidationFailed(
            'The schema must describe an object with its fields: {"type": "object", "properties": {...}}.',
            extra={"path": "#"},
        )
    for name in schema["properties"]:
        if not re.match(FIELD_NAME, name):
            raise ValidationFailed(
                f"Field name {name!r} must be letters, digits and _ (at most 50, not starting with a digit).",
                extra={"path": f"#/properties/{name}"},
            )
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "#/" + "/".join(str(p) for p in exc.path) if exc.path else "#"
        raise ValidationFailed(
            f"Not a valid JSON schema at {where}: {exc.message}", extra={"path": where}
        ) from None
    try:
        json_schema_constraint(schema)
    except UnsupportedConstraint as exc:
        raise ValidationFailed(str(exc), extra={"feature": exc.feature, "path": exc.path}) from None
    return schema


def _check_instruction(instruction: str) -> str:
    instruction = instruction.strip()
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise ValidationFailed(f"The instruction is longer than {MAX_INSTRUCTION_CHARS} characters.")
    return instruction


def document_type_create(
    *, scope, name: str, slug: str, schema: dict[str, Any], instruction: str = ""
) -> DocumentType:
    """A type of the scope's organisation (site-wide types are made in the Django admin)."""
    if not scope.can_administer:
        raise PermissionDenied("Only admins can define document types.")
    user = scope.user
    schema = document_type_schema_check(schema)
    instruction = _check_instruction(instruction)
    if slug == RESERVED_SLUG:
        raise ValidationFailed("'invoice' is the built-in invoice type; choose another slug.")
    with transaction.atomic():
        if DocumentType.objects.filter(organization=scope.organization, slug=slug).exists():
            raise ValidationFailed(f"A document type with slug {slug!r} exists already.")
        document_type = DocumentType.objects.create(
            organization=scope.organization,
            name=name.strip(),
            slug=slug,
            schema=schema,
            instruction=instruction,
            version=1,
            created_by=user,
        )
        DocumentTypeVersion.objects.create(
            document_type=document_type, number=1, schema=schema, instruction=instruction, created_by=user
        )
    logger.info("document type %s created by user %s", slug, user.pk)
    return document_type


def document_type_update(
    *,
    document_type: DocumentType,
    scope,
    name: str | None = None,
    schema: dict[str, Any] | None = None,
    instruction: str | None = None,
) -> DocumentType:
    """Rename, or change the definition: a new schema or instruction is a new version (stored
    results and queued jobs keep theirs). The slug never changes: uploads and exports name it."""
    if not scope.can_administer or document_type.organization_id != getattr(scope.organization, "pk", None):
        # A site-wide type is changed in the Django admin, by site staff.
        raise PermissionDenied("Only admins can change document types.")
    user = scope.user
    if schema is not None:
        schema = document_type_schema_check(schema)
    if instruction is not None:
        instruction = _check_instruction(instruction)
    with transaction.atomic():
        locked = DocumentType.objects.select_for_update().get(pk=document_type.pk)
        if name is not None:
            locked.name = name.strip()
        changed = (schema is not None and schema != locked.schema) or (
            instruction is not None and instruction != locked.instruction
        )
        if changed:
            locked.schema = schema if schema is not None else locked.schema
            locked.instruction = instruction if instruction is not None else locked.instruction
            locked.version += 1
            DocumentTypeVersion.objects.create(
                document_type=locked,
                number=locked.version,
                schema=locked.schema,
                instruction=locked.instruction,
                created_by=user,
            )
        locked.save()
    if changed:
        logger.info("document type %s: version %d by user %s", locked.slug, locked.version, user.pk)
    return locked
