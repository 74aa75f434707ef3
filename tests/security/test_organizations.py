"""Organisations scope everything: a user in two organisations sees only the one a request acts
in, an API key only its own, and every selector takes the caller's scope (so a new one cannot
forget it)."""

from __future__ import annotations

import inspect
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from accounts.roles import Role
from accounts.scope import Scope, scope_for
from tests.vision import files

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_teams(user_factory):
    """Team A (alice admin, carol reviewer) and team B (bob admin, carol member); A owns a
    document, a job, a batch, an extraction and a conversation."""
    from accounts.models import Organization
    from accounts.services import membership_add
    from vision.models import Batch, Conversation, Extraction, Job
    from vision.services.documents import document_upload

    team_a = Organization.objects.create(name="Team A", slug="team-a")
    team_b = Organization.objects.create(name="Team B", slug="team-b")
    alice = user_factory(Role.ADMIN, organization=team_a)
    bob = user_factory(Role.ADMIN, organization=team_b)
    carol = user_factory(Role.MEMBER)
    membership_add(scope=scope_for(alice), username=carol.username, role=Role.REVIEWER)
    membership_add(scope=scope_for(bob), username=carol.username, role=Role.MEMBER)
    scope_a = scope_for(alice)
    document = document_upload(scope=scope_a, data=files.image_bytes("PNG"), filename="a.png").document
    batch = Batch.objects.create(organization=team_a, owner=alice, task="caption")
    job = Job.objects.create(
        organization=team_a, owner=alice, batch=batch, document=document, task="caption", max_tokens=4
    )
    extraction = Extraction.objects.create(organization=team_a, document=document, job=job)
    conversation = Conversation.objects.create(organization=team_a, owner=carol, key="c" * 64, model="m")
    return {
        "a": team_a,
        "b": team_b,
        "alice": alice,
        "bob": bob,
        "carol": carol,
        "document": document,
        "job": job,
        "batch": batch,
        "extraction": extraction,
        "conversation": conversation,
    }


def _key(user, organization, scopes=None, **kwargs) -> str:
    from accounts.services import api_key_create

    return api_key_create(
        scope=scope_for(user, organization=organization), name="k", scopes=scopes, **kwargs
    ).raw_key


def _paths(t) -> list[str]:
    return [
        f"/api/documents/{t['document'].pk}",
        f"/api/jobs/{t['job'].pk}",
        f"/api/batches/{t['batch'].pk}",
        f"/api/batches/{t['batch'].pk}/export?format=csv",
    ]


def test_a_key_of_organisation_b_gets_404_on_organisation_as_objects(api_client, two_teams) -> None:
    t = two_teams
    for user in (t["bob"], t["carol"]):  # bob is only in B; carol is in both, her key is B's
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {_key(user, t['b'])}")
        for path in _paths(t):
            assert api_client.get(path).status_code == 404, path
        # Naming organisation A in the header changes nothing: a key acts in its own only.
        assert api_client.get(_paths(t)[0], HTTP_X_ORGANIZATION="team-a").status_code == 404
        for path in ("/api/documents", "/api/jobs", "/api/batches"):
            assert api_client.get(path).json()["results"] == [], path
        assert api_client.delete(f"/api/documents/{t['document'].pk}").status_code == 404
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {_key(t['carol'], t['a'])}")
    assert [d["id"] for d in api_client.get("/api/documents").json()["results"]] == [t["document"].pk]
    for path in _paths(t):
        assert api_client.get(path).status_code == 200, path


def test_a_member_of_both_sees_the_organisation_the_request_acts_in(api_client, two_teams) -> None:
    t = two_teams
    api_client.force_authenticate(t["carol"])  # acting in her personal organisation
    document_url = f"/api/documents/{t['document'].pk}"
    assert api_client.get("/api/auth/me/").json()["organization"] == t["carol"].username
    assert api_client.get(document_url).status_code == 404
    assert api_client.post(f"/api/auth/organizations/{t['b'].pk}/switch/").status_code == 200
    assert api_client.get("/api/auth/me/").json()["organization"] == "team-b"
    assert api_client.get(document_url).status_code == 404
    assert api_client.get(document_url, HTTP_X_ORGANIZATION="team-a").status_code == 200
    assert api_client.get("/api/conversations/").json()["results"] == []
    in_a = api_client.get("/api/conversations/", HTTP_X_ORGANIZATION="team-a").json()["results"]
    assert [c["id"] for c in in_a] == [t["conversation"].pk]
    # A header naming an organisation the user is not in is a 404, not a fallback.
    assert api_client.get("/api/documents", HTTP_X_ORGANIZATION="nobodys").status_code == 404
    # The switcher makes A the active one.
    assert api_client.post(f"/api/auth/organizations/{t['a'].pk}/switch/").status_code == 200
    assert api_client.get(document_url).status_code == 200
    api_client.force_authenticate(t["bob"])
    assert api_client.post(f"/api/auth/organizations/{t['a'].pk}/switch/").status_code == 404


def test_review_is_the_organisations_reviewers(two_teams) -> None:
    from docplatform.errors import NotFound, PermissionDenied
    from vision.portal.selectors import review_queue
    from vision.services.extractions import extraction_approve

    t = two_teams
    carol_in_a, carol_in_b = (
        scope_for(t["carol"], organization=t["a"]),
        scope_for(t["carol"], organization=t["b"]),
    )
    assert list(review_queue(scope=carol_in_a)) == [t["extraction"]]
    assert list(review_queue(scope=carol_in_b)) == []
    with pytest.raises(NotFound):  # bob is B's admin: A's extraction does not exist for him
        extraction_approve(extraction=t["extraction"], scope=scope_for(t["bob"]))
    with pytest.raises(NotFound):
        extraction_approve(extraction=t["extraction"], scope=carol_in_b)
    approved = extraction_approve(extraction=t["extraction"], scope=carol_in_a, comment="ok")
    assert approved.status == "approved" and approved.reviewer == t["carol"]
    with pytest.raises(PermissionDenied):  # a reviewer's key without the review scope
        from accounts.selectors import api_key_get_active

        key = api_key_get_active(raw_key=_key(t["carol"], t["a"], scopes=["read", "write"]))
        extraction_approve(extraction=t["extraction"], scope=scope_for(t["carol"], api_key=key))


def test_key_scopes_and_expiry(api_client, two_teams) -> None:
    from accounts.models import ApiKey
    from docplatform.errors import ValidationFailed

    t = two_teams
    read_only = _key(t["alice"], t["a"], scopes=["read"])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_only}")
    assert api_client.get("/api/documents").status_code == 200
    upload = SimpleUploadedFile("x.png", files.image_bytes("PNG"))
    refused = api_client.post("/api/documents", {"file": upload}, format="multipart")
    assert refused.status_code == 403 and "write" in refused.json()["detail"]
    assert api_client.delete(f"/api/documents/{t['document'].pk}").status_code == 403
    # A member cannot give a key more than their role.
    with pytest.raises(ValidationFailed, match="reviewer role"):
        _key(t["carol"], t["b"], scopes=["review"])
    expiring = _key(t["alice"], t["a"], expires_at=timezone.now() + timedelta(hours=1))
    ApiKey.objects.filter(prefix=expiring[:11]).update(expires_at=timezone.now() - timedelta(seconds=1))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {expiring}")
    assert api_client.get("/api/documents").status_code == 401


def test_a_removed_member_loses_the_organisation_and_its_keys(api_client, two_teams) -> None:
    from accounts.services import membership_remove

    t = two_teams
    key = _key(t["carol"], t["a"])
    membership_remove(scope=scope_for(t["alice"]), user_id=t["carol"].pk)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api_client.get("/api/documents").status_code == 401
    api_client.credentials()
    api_client.force_authenticate(t["carol"])
    assert (
        api_client.get(f"/api/documents/{t['document'].pk}", HTTP_X_ORGANIZATION="team-a").status_code == 404
    )


def test_v1_usage_is_counted_per_organisation_and_key_with_bounded_labels(two_teams, settings) -> None:
    from accounts.models import ApiUsage
    from accounts.selectors import api_key_get_active
    from accounts.services import api_usage_record
    from docplatform.metrics import web

    t = two_teams
    key = api_key_get_active(raw_key=_key(t["alice"], t["a"]))
    for _ in range(3):
        api_usage_record(scope=scope_for(t["alice"], api_key=key), prompt_tokens=5, completion_tokens=2)
    api_usage_record(scope=scope_for(t["bob"]))
    row = ApiUsage.objects.get(organization=t["a"], api_key=key)
    assert (row.requests, row.prompt_tokens, row.completion_tokens) == (3, 15, 6)
    assert ApiUsage.objects.get(organization=t["b"], api_key=None).requests == 1

    settings.METRICS_MAX_ORGANIZATIONS = len(web._organization_labels) + 1
    assert web.organization_label("first-new-org") == "first-new-org"
    assert web.organization_label("second-new-org") == web.OTHER_ORGANIZATIONS
    assert web.organization_label("first-new-org") == "first-new-org"


# Reads that are not about one organisation's objects, and why.
_FLEET_WIDE = {
    "vision.portal.selectors.platform_state": "worker and queue counts of the whole fleet, no object",
    "vision.selectors.job_queue_position": "a count of jobs ahead in the shared queue, for a job the caller got through job_get",
    "accounts.selectors.api_key_get_active": "decides the scope: the key a request presents",
}
# Parameters that are an object the caller already got through a scoped getter.
_SCOPED_OBJECTS = {"job", "batch", "document", "document_type", "extraction", "conversation", "after"}


def test_every_selector_takes_the_organisation() -> None:
    """Every read of the platform takes `scope` (the caller's organisation), or an object that a
    scoped getter returned; none takes a bare `user` that would read across organisations."""
    import importlib

    checked = []
    for module_name in (
        "vision.selectors",
        "vision.conversations.selectors",
        "vision.portal.selectors",
        "accounts.selectors",
    ):
        module = importlib.import_module(module_name)
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or function.__module__ != module_name:
                continue
            qualified = f"{module_name}.{name}"
            parameters = inspect.signature(function).parameters
            assert "user" not in parameters, f"{qualified} takes a user: take scope instead"
            if qualified in _FLEET_WIDE:
                continue
            assert "scope" in parameters or _SCOPED_OBJECTS & set(parameters), (
                f"{qualified} must take scope= (the caller's organisation) or a scoped object"
            )
            checked.append(qualified)
    assert len(checked) >= 15


def test_system_scope_reads_one_organisation(two_teams) -> None:
    from vision.selectors import document_list

    t = two_teams
    assert list(document_list(scope=Scope.system(t["a"]))) == [t["document"]]
    assert list(document_list(scope=Scope.system(t["b"]))) == []
