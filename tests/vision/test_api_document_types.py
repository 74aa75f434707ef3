"""/api/document-types: members list and read types, only admins define and change them; the
schema is checked (supported features only, bounded size and depth) and a change is a new
version."""

from __future__ import annotations

import pytest

from accounts.roles import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def user_factory(user_factory, team):
    """Admins, reviewers and members of one team organisation: its types are theirs."""
    return lambda role=Role.MEMBER, **kwargs: user_factory(role, organization=team, **kwargs)


@pytest.fixture
def outsider(django_user_model):
    """A user of another organisation only (their personal one)."""
    from accounts.services import user_create

    return user_create(username="outsider", password="correct horse battery", role=Role.ADMIN)


RECEIPT = {
    "type": "object",
    "properties": {
        "merchant": {"type": "string", "maxLength": 60},
        "total": {"type": "number", "minimum": 0},
        "paid_with": {"enum": ["cash", "card"]},
    },
    "required": ["merchant", "total"],
}


def _create(api_client, user, **overrides):
    api_client.force_authenticate(user)
    body = {
        "name": "Receipt",
        "slug": "receipt",
        "schema": RECEIPT,
        "instruction": "Read the receipt.",
        **overrides,
    }
    return api_client.post("/api/document-types", body, format="json")


def test_an_admin_defines_a_type_and_a_member_reads_it(api_client, user_factory) -> None:
    created = _create(api_client, user_factory(Role.ADMIN))
    assert created.status_code == 201, created.content
    assert created.json()["version"] == 1 and created.json()["schema"] == RECEIPT

    api_client.force_authenticate(user_factory(Role.MEMBER))
    listed = api_client.get("/api/document-types")
    assert listed.status_code == 200
    assert [t["slug"] for t in listed.json()["results"]] == ["receipt"]
    detail = api_client.get("/api/document-types/receipt")
    assert detail.status_code == 200
    assert detail.json()["instruction"] == "Read the receipt." and detail.json()["versions"] == [1]


@pytest.mark.parametrize("role", [Role.MEMBER, Role.REVIEWER])
def test_members_and_reviewers_cannot_define_or_change_types(api_client, user_factory, role) -> None:
    assert _create(api_client, user_factory(Role.ADMIN)).status_code == 201
    refused = _create(api_client, user_factory(role), slug="other")
    assert refused.status_code == 403, refused.content
    changed = api_client.patch("/api/document-types/receipt", {"instruction": "x"}, format="json")
    assert changed.status_code == 403
    api_client.force_authenticate(user_factory(Role.ADMIN))
    assert api_client.get("/api/document-types/receipt").json()["version"] == 1
    assert api_client.get("/api/document-types/other").status_code == 404


def test_another_organisations_types_do_not_exist_for_it(api_client, user_factory, outsider) -> None:
    """A type belongs to the organisation that defined it: another organisation's admin neither
    lists nor reads nor changes it, and may define its own of the same slug."""
    assert _create(api_client, user_factory(Role.ADMIN)).status_code == 201
    api_client.force_authenticate(outsider)
    assert api_client.get("/api/document-types").json()["results"] == []
    assert api_client.get("/api/document-types/receipt").status_code == 404
    assert api_client.patch("/api/document-types/receipt", {"name": "x"}, format="json").status_code == 404
    assert _create(api_client, outsider, instruction="Ours.").status_code == 201
    assert api_client.get("/api/document-types/receipt").json()["instruction"] == "Ours."


def test_anonymous_clients_get_401(api_client) -> None:
    assert api_client.get("/api/document-types").status_code == 401
    assert api_client.post("/api/document-types", {}, format="json").status_code == 401


def test_a_schema_change_is_a_new_version_and_the_old_one_stays(api_client, user_factory) -> None:
    assert _create(api_client, user_factory(Role.ADMIN)).status_code == 201
    renamed = api_client.patch("/api/document-types/receipt", {"name": "Till receipt"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["version"] == 1  # a name is not the definition
    new_schema = {**RECEIPT, "properties": {**RECEIPT["properties"], "date": {"type": "string"}}}
    changed = api_client.patch("/api/document-types/receipt", {"schema": new_schema}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["version"] == 2 and changed.json()["versions"] == [1, 2]
    assert api_client.get("/api/document-types/receipt/versions/1").json()["schema"] == RECEIPT
    assert api_client.get("/api/document-types/receipt/versions/2").json()["schema"] == new_schema
    assert api_client.get("/api/document-types/receipt/versions/3").status_code == 404


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"type": "string"}, "object with its fields"),
        ({"type": "object", "properties": {"9lives": {"type": "string"}}}, "9lives"),
        ({"type": "object", "properties": {"a": {"type": "nonsense"}}}, "Not a valid JSON schema"),
        ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "'not' at #/properties/a/not"),
        ({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}}, "uniqueItems"),
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=a)b"}}}, "look-around"),
        (
            {"type": "object", "properties": {"a": {"type": "string", "format": "uri-reference"}}},
            "uri-reference",
        ),
    ],
)
def test_a_schema_that_cannot_be_enforced_is_refused(api_client, user_factory, schema, says) -> None:
    response = _create(api_client, user_factory(Role.ADMIN), schema=schema)
    assert response.status_code == 400, response.content
    assert says in response.json()["detail"]


def test_an_unsupported_keyword_is_named_with_its_path(api_client, user_factory) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "object", "if": {"type": "object"}, "then": {}}}}
    response = _create(api_client, user_factory(Role.ADMIN), schema=schema)
    assert response.status_code == 400, response.content
    assert "'if' at #/properties/a/if" in response.json()["detail"]


def test_size_and_depth_are_bounded(api_client, user_factory) -> None:
    deep: dict = {"type": "string"}
    for _ in range(20):
        deep = {"type": "object", "properties": {"x": deep}}
    response = _create(
        api_client, user_factory(Role.ADMIN), schema={"type": "object", "properties": {"x": deep}}
    )
    assert response.status_code == 400 and "levels deep" in response.json()["detail"]
    huge = {
        "type": "object",
        "properties": {f"f{i}": {"type": "string", "description": "x" * 100} for i in range(400)},
    }
    response = _create(api_client, user_factory(Role.ADMIN), schema=huge)
    assert response.status_code == 400 and "bytes" in response.json()["detail"]


def test_invoice_is_the_built_in_type(api_client, user_factory) -> None:
    response = _create(api_client, user_factory(Role.ADMIN), slug="invoice")
    assert response.status_code == 400 and "built-in" in response.json()["detail"]


def test_extract_jobs_need_a_known_type(api_client, user_factory) -> None:
    api_client.force_authenticate(user_factory())
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.vision.files import image_bytes

    def submit(**extra):
        upload = SimpleUploadedFile("a.png", image_bytes(), content_type="image/png")
        return api_client.post("/api/jobs", {"task": "extract", "file": upload, **extra}, format="multipart")

    assert "document_type" in submit().json()["detail"]
    assert submit(document_type="nope").status_code == 400
    assert "task=invoice" in submit(document_type="invoice").json()["detail"]
