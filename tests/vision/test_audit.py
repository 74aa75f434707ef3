"""The organisation's audit trail records who saw, downloaded and exported what (ids only), in
the same table as the review history, shares and deletions."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from accounts.scope import scope_for
from tests.vision import files

pytestmark = pytest.mark.django_db


def test_views_downloads_exports_and_deletes_are_in_the_organisations_trail(api_client, user_factory) -> None:
    from vision.models import Batch, ExtractionEvent

    user, stranger = user_factory(), user_factory()
    api_client.force_authenticate(user)
    upload = SimpleUploadedFile("a.png", files.image_bytes("PNG"))
    document_id = api_client.post("/api/documents", {"file": upload}, format="multipart").json()["id"]
    organization = scope_for(user).organization

    assert api_client.get(f"/api/documents/{document_id}").status_code == 200
    portal = Client()
    portal.force_login(user)
    assert portal.get(f"/documents/{document_id}/original/").status_code == 200
    batch = Batch.objects.create(organization=organization, owner=user, task="caption")
    assert api_client.get(f"/api/batches/{batch.pk}/export?format=csv").status_code == 200
    api_client.force_authenticate(stranger)
    assert api_client.get(f"/api/documents/{document_id}").status_code == 404  # not recorded
    api_client.force_authenticate(user)
    assert api_client.delete(f"/api/documents/{document_id}").status_code == 204

    trail = list(ExtractionEvent.objects.filter(organization=organization).order_by("pk"))
    assert [(e.action, e.document_id, e.actor_id) for e in trail] == [
        ("viewed", document_id, user.pk),
        ("downloaded", document_id, user.pk),
        ("exported", None, user.pk),
        ("deleted", document_id, user.pk),
    ]
    assert trail[2].detail == {"batch": batch.pk, "format": "csv"}
    assert not ExtractionEvent.objects.filter(organization=scope_for(stranger).organization).exists()
