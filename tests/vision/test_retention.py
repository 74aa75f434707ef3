"""Retention (#27): documents older than their organisation's `retention_days` (or their document
type's, which overrides it) go with their files and derived data, except those under legal hold;
`retention_run` does it in batches, `manage.py retention --dry-run` lists what would go, the
`vision.retention_run` task runs it daily from beat. Legal hold is set with PATCH
/api/documents/<id> by the organisation's admins."""

from __future__ import annotations

import itertools
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone

from accounts.roles import Role
from accounts.scope import scope_for
from tests.vision import files
from tests.vision.s3 import object_keys
from vision.models import (
    Document,
    DocumentPage,
    DocumentType,
    DocumentTypeVersion,
    Extraction,
    ExtractionEvent,
    ExtractionEventAction,
    Job,
    ShareLink,
)
from vision.services.documents import document_files, document_upload
from vision.services.retention import retention_run
from vision.services.sharing import share_link_create

pytestmark = pytest.mark.django_db

_uploads = itertools.count(1)  # each upload a different colour: different bytes, no duplicate


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _color() -> tuple[int, int, int]:
    n = next(_uploads)
    return (n % 256, n // 256 % 256, 99)


def _upload(user, *, age_days: float, hold: bool = False) -> Document:
    """A real upload (its files in the storage), `age_days` old."""
    document = document_upload(
        scope=scope_for(user), data=files.image_bytes("TIFF", color=_color()), filename="scan.tiff"
    ).document
    Document.objects.filter(pk=document.pk).update(
        created_at=timezone.now() - timedelta(days=age_days), legal_hold=hold
    )
    document.refresh_from_db()
    return document


def _read_as(document: Document, document_type: DocumentType) -> Extraction:
    version, _ = DocumentTypeVersion.objects.get_or_create(
        document_type=document_type, number=1, defaults={"schema": document_type.schema}
    )
    return Extraction.objects.create(
        organization=document.organization,
        document=document,
        kind=document_type.slug,
        document_type_version=version,
    )


def _document_type(organization, *, slug: str, days: int | None) -> DocumentType:
    return DocumentType.objects.create(
        organization=organization,
        name=slug,
        slug=slug,
        schema={"type": "object", "properties": {"number": {"type": "string"}}},
        retention_days=days,
    )


def _exists(document: Document) -> bool:
    return Document.objects.filter(pk=document.pk).exists()


def test_old_documents_go_with_their_files_held_and_young_ones_stay(
    media_root, settings, user_factory, team, django_capture_on_commit_callbacks
):
    """GIVEN a team keeping documents 30 days and a user whose organisation keeps them for ever
    WHEN retention runs (in batches of one) THEN the team's documents older than 30 days are
    gone (rows, pages, jobs, extractions, share links and files under MEDIA_ROOT) with a
    retention_deleted event each; its held and young documents and the other organisation's old
    one stay."""
    settings.RETENTION_BATCH_SIZE = 1
    team.retention_days = 30
    team.save()
    member = user_factory(Role.MEMBER, organization=team)
    old = [_upload(member, age_days=31), _upload(member, age_days=400)]
    held = _upload(member, age_days=400, hold=True)
    young = _upload(member, age_days=29)
    elsewhere = _upload(user_factory(), age_days=400)
    Job.objects.create(organization=team, owner=member, document=old[0], task="ocr", max_tokens=8)
    Extraction.objects.create(organization=team, document=old[0], fields={"total": "1"})
    share_link_create(scope=scope_for(member), document=old[0])
    old_files = [media_root / path for document in old for path in document_files(document)]
    kept_files = [media_root / path for d in (held, young, elsewhere) for path in document_files(d)]
    assert all(path.is_file() for path in old_files + kept_files)

    with django_capture_on_commit_callbacks(execute=True):
        report = retention_run()

    assert report.deleted == {team.pk: [old[1].pk, old[0].pk]} and report.failed == []  # oldest first
    assert not any(_exists(document) for document in old)
    assert not DocumentPage.objects.filter(document_id__in=[d.pk for d in old]).exists()
    assert not Job.objects.filter(document_id=old[0].pk).exists()
    assert not Extraction.objects.filter(document_id=old[0].pk).exists()
    assert not ShareLink.objects.filter(document_id=old[0].pk).exists()
    assert not any(path.exists() for path in old_files)
    assert all(_exists(document) for document in (held, young, elsewhere))
    assert all(path.is_file() for path in kept_files)
    events = ExtractionEvent.objects.filter(action=ExtractionEventAction.RETENTION_DELETED)
    assert sorted(events.values_list("document_id", flat=True)) == sorted(d.pk for d in old)
    assert {(e.organization_id, e.actor_id) for e in events} == {(team.pk, None)}

    assert retention_run().total == 0  # nothing left to do


def test_a_document_types_retention_overrides_the_organisations(media_root, user_factory, team):
    """The team keeps documents 30 days, but contracts (a type) 365; receipts (another type of a
    team that keeps everything else) 10 days. Read as several types, the longest rule wins."""
    team.retention_days = 30
    team.save()
    member = user_factory(Role.MEMBER, organization=team)
    contracts = _document_type(team, slug="contract", days=365)
    plain_type = _document_type(team, slug="letter", days=None)  # follows the organisation
    contract = _upload(member, age_days=100)
    _read_as(contract, contracts)
    old_contract = _upload(member, age_days=366)
    _read_as(old_contract, contracts)
    letter = _upload(member, age_days=31)
    _read_as(letter, plain_type)
    both = _upload(member, age_days=100)
    _read_as(both, contracts)

    other = user_factory(Role.ADMIN)  # a personal organisation without retention
    receipts = _document_type(scope_for(other).organization, slug="receipt", days=10)
    receipt = _upload(other, age_days=11)
    _read_as(receipt, receipts)
    fresh_receipt = _upload(other, age_days=9)
    _read_as(fresh_receipt, receipts)
    untyped = _upload(other, age_days=1000)

    report = retention_run()

    deleted = {pk for ids in report.deleted.values() for pk in ids}
    assert deleted == {old_contract.pk, letter.pk, receipt.pk}
    assert report.deleted[scope_for(other).organization.pk] == [receipt.pk]
    assert all(_exists(d) for d in (contract, both, fresh_receipt, untyped))


def test_dry_run_lists_and_deletes_nothing(media_root, user_factory, team):
    team.retention_days = 7
    team.save()
    member = user_factory(Role.MEMBER, organization=team)
    old = _upload(member, age_days=8)
    _upload(member, age_days=8, hold=True)
    out = StringIO()

    call_command("retention", "--dry-run", stdout=out)

    assert f"organization {team.pk}: would delete 1 documents: {old.pk}" in out.getvalue()
    assert _exists(old)
    assert not ExtractionEvent.objects.filter(action=ExtractionEventAction.RETENTION_DELETED).exists()

    call_command("retention", stdout=out)
    assert not _exists(old) and f"deleted 1 documents: {old.pk}" in out.getvalue()


def test_the_daily_task_runs_the_service(media_root, user_factory, team):
    from vision.tasks import retention_run_task

    team.retention_days = 1
    team.save()
    old = _upload(user_factory(Role.MEMBER, organization=team), age_days=2)

    result = retention_run_task()

    assert result == {"deleted": 1, "organizations": 1, "failed": 0}
    assert not _exists(old)
    entry = django_settings.CELERY_BEAT_SCHEDULE["retention-daily"]
    assert entry["task"] == "vision.retention_run" == retention_run_task.name
    assert (entry["schedule"].hour, entry["schedule"].minute) == ({3}, {30})


def test_now_decides_what_is_old(media_root, user_factory, team):
    team.retention_days = 30
    team.save()
    document = _upload(user_factory(Role.MEMBER, organization=team), age_days=0)

    assert retention_run(now=timezone.now() + timedelta(days=29)).total == 0
    assert retention_run(now=timezone.now() + timedelta(days=31)).deleted == {team.pk: [document.pk]}


def test_legal_hold_is_set_by_admins_only(api_client, user_factory, team, media_root):
    team.retention_days = 1
    team.save()
    member = user_factory(Role.MEMBER, organization=team)
    admin = user_factory(Role.ADMIN, organization=team)
    document = _upload(member, age_days=5)

    api_client.force_authenticate(member)
    assert (
        api_client.patch(f"/api/documents/{document.pk}", {"legal_hold": True}, format="json").status_code
        == 403
    )
    api_client.force_authenticate(user_factory(Role.ADMIN))  # another organisation's admin
    assert (
        api_client.patch(f"/api/documents/{document.pk}", {"legal_hold": True}, format="json").status_code
        == 404
    )
    api_client.force_authenticate(admin)
    assert api_client.patch(f"/api/documents/{document.pk}", {}, format="json").status_code == 400
    held = api_client.patch(f"/api/documents/{document.pk}", {"legal_hold": True}, format="json")

    assert held.status_code == 200 and held.json()["legal_hold"] is True
    assert api_client.get(f"/api/documents/{document.pk}").json()["legal_hold"] is True
    assert retention_run().total == 0 and _exists(document)

    released = api_client.patch(f"/api/documents/{document.pk}", {"legal_hold": False}, format="json")
    assert released.json()["legal_hold"] is False
    assert retention_run().deleted == {team.pk: [document.pk]}


def test_retention_removes_the_objects_from_the_bucket(
    s3_media, user_factory, team, django_capture_on_commit_callbacks
):
    """GIVEN MEDIA_STORAGE=s3 WHEN retention runs THEN the expired document's objects are gone
    from the bucket and the held one's stay."""
    team.retention_days = 30
    team.save()
    member = user_factory(Role.MEMBER, organization=team)
    expired = _upload(member, age_days=31)
    held = _upload(member, age_days=31, hold=True)
    prefix = f"org-{team.pk}/"
    expired_keys, held_keys = set(document_files(expired)), set(document_files(held))
    assert expired_keys | held_keys <= object_keys(prefix)

    with django_capture_on_commit_callbacks(execute=True):
        report = retention_run()

    assert report.deleted == {team.pk: [expired.pk]}
    keys = object_keys(prefix)
    assert not expired_keys & keys and held_keys <= keys
    assert not s3_media.MEDIA_ROOT.exists()
