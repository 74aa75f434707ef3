"""/api/batches end to end through the real worker, and the CSV/JSON export."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.scope import scope_for
from tests.vision import files
from tests.vision.jobs_helpers import wait_status
from vision.models import Batch, Document

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _file(name: str, color: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, files.image_bytes("PNG", (80, 60), color), content_type="image/png")


def test_batch_of_captions_runs_and_exports(api_client, user_factory, redis_url):
    """GIVEN three images WHEN posted as a caption batch THEN 202, progress reaches 3/3 succeeded,
    and the export lists each file's result as CSV and JSON."""
    api_client.force_authenticate(user_factory())
    names = ["one.png", "two.png", "=cmd.png"]
    uploads = [_file(name, color) for name, color in zip(names, ["red", "green", "blue"], strict=True)]

    response = api_client.post(
        "/api/batches", {"task": "caption", "files": uploads, "max_tokens": 6}, format="multipart"
    )

    assert response.status_code == 202, response.content
    batch = response.json()
    assert batch["progress"]["total"] == 3
    done = wait_status(api_client, batch["status_url"], {"finished"}, timeout=180)
    assert done["progress"]["succeeded"] == 3 and done["progress"]["fraction"] == 1.0
    assert [job["status"] for job in done["jobs"]] == ["succeeded"] * 3

    exported = api_client.get(f"/api/batches/{batch['id']}/export?format=csv")
    assert exported.status_code == 200
    assert exported["Content-Type"].startswith("text/csv")
    assert f"batch-{batch['id']}.csv" in exported["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert [row["file_name"] for row in rows] == ["one.png", "two.png", "'=cmd.png"]  # no formula
    assert all(
        row["status"] == "succeeded" and row["result"] and int(row["completion_tokens"]) >= 1 for row in rows
    )

    as_json = api_client.get(f"/api/batches/{batch['id']}/export?format=json")
    assert as_json.status_code == 200 and as_json["Content-Type"].startswith("application/json")
    body = as_json.json()
    assert body["batch"] == {"id": batch["id"], "task": "caption", "status": "finished"}
    assert [row["job_id"] for row in body["rows"]] == [job["id"] for job in done["jobs"]]
    assert body["rows"][2]["file_name"] == "=cmd.png"  # JSON keeps the real name


def test_batch_with_one_bad_file_is_refused_whole(api_client, user_factory):
    api_client.force_authenticate(user_factory())
    bad = SimpleUploadedFile("evil.png", files.SVG_AS_PNG, content_type="image/png")

    response = api_client.post(
        "/api/batches", {"task": "caption", "files": [_file("ok.png", "red"), bad]}, format="multipart"
    )

    assert response.status_code == 415
    assert "File 2 (evil.png)" in response.json()["detail"]
    assert Batch.objects.count() == 0 and Document.objects.count() == 0


def test_batch_size_limit(api_client, user_factory, settings):
    settings.BATCH_MAX_FILES = 2
    api_client.force_authenticate(user_factory())
    uploads = [_file(f"{i}.png", color) for i, color in enumerate(["red", "green", "blue"])]

    response = api_client.post("/api/batches", {"task": "caption", "files": uploads}, format="multipart")

    assert response.status_code == 400 and "at most 2" in response.json()["detail"]


def test_other_users_batch_is_404(api_client, user_factory):
    alice, bob = user_factory(), user_factory()
    batch = Batch.objects.create(organization=scope_for(alice).organization, owner=alice, task="caption")
    api_client.force_authenticate(bob)

    assert api_client.get(f"/api/batches/{batch.pk}").status_code == 404
    assert api_client.get(f"/api/batches/{batch.pk}/export?format=json").status_code == 404
    assert api_client.get(f"/api/batches/{batch.pk}/export?format=csv").status_code == 404
    assert api_client.get("/api/batches").json()["count"] == 0
