"""The migration that brought organisations: a database with users and their objects from before
gives each user a personal organisation holding all of them, with the user's role, so nothing
changes for them. Run on a scratch database of the same engine as the suite (a fresh SQLite file,
or a new PostgreSQL database on the suite's server), in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from django.conf import settings

from tests.conftest import REPO_ROOT

BEFORE = [("accounts", "0002_roles"), ("vision", "0008_einvoice")]

SCRIPT = r"""
import json, sys
import django
django.setup()
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

before = [("accounts", "0002_roles"), ("vision", "0008_einvoice")]
executor = MigrationExecutor(connection)
executor.migrate(before)
apps = executor.loader.project_state(before).apps
User = apps.get_model("accounts", "User")
Group = apps.get_model("auth", "Group")
ApiKey = apps.get_model("accounts", "ApiKey")
Document = apps.get_model("vision", "Document")
Job = apps.get_model("vision", "Job")
Batch = apps.get_model("vision", "Batch")
Conversation = apps.get_model("vision", "Conversation")
Extraction = apps.get_model("vision", "Extraction")
ExtractionEvent = apps.get_model("vision", "ExtractionEvent")

users = {}
for name, group in (("alice", "member"), ("rita", "reviewer"), ("Alice", "admin"), ("root", None)):
    user = User.objects.create(username=name, password="!", is_superuser=group is None)
    if group:
        user.groups.add(Group.objects.get(name=group))
    users[name] = user
for name in ("alice", "rita"):
    owner = users[name]
    document = Document.objects.create(owner=owner, original_name="a.png", content_type="image/png",
        kind="image", size=1, sha256=(name * 16)[:64], file=f"uploads/{name}/a.png", page_count=1)
    batch = Batch.objects.create(owner=owner, task="invoice")
    job = Job.objects.create(owner=owner, batch=batch, document=document, task="invoice", max_tokens=4)
    extraction = Extraction.objects.create(document=document, job=job)
    ExtractionEvent.objects.create(extraction=extraction, action="created")
    Conversation.objects.create(owner=owner, key=(name * 16)[:64], model="m")
    ApiKey.objects.create(user=owner, name="k", prefix="dp_x", key_hash=(name * 13)[:64])

executor = MigrationExecutor(connection)
executor.migrate(executor.loader.graph.leaf_nodes())

from accounts.models import ApiKey, Membership, User
from vision.models import Batch, Conversation, Document, Extraction, ExtractionEvent, Job

out = {}
for user in User.objects.order_by("username"):
    memberships = list(Membership.objects.filter(user=user).select_related("organization"))
    personal = [m for m in memberships if m.organization.personal]
    org = personal[0].organization if personal else None
    out[user.username] = {
        "memberships": len(memberships),
        "personal": len(personal),
        "role": personal[0].role if personal else None,
        "slug": org.slug if org else None,
        "active": user.active_organization_id == (org.pk if org else -1),
        "owned": sorted(
            (model.__name__, model.objects.filter(owner=user).exclude(organization=org).count(),
             model.objects.filter(owner=user, organization=org).count())
            for model in (Document, Job, Batch, Conversation)
        ),
        "extractions": Extraction.objects.filter(document__owner=user, organization=org).count(),
        "events": ExtractionEvent.objects.filter(extraction__document__owner=user, organization=org).exclude(document_id=None).count(),
        "keys": [(key.organization_id == (org.pk if org else -1), key.scopes) for key in ApiKey.objects.filter(user=user)],
    }
print("RESULT " + json.dumps(out))
"""


def _scratch_database() -> tuple[str, object]:
    """A URL of an empty database of the suite's engine, and how to drop it."""
    url = settings.DATABASES["default"]
    if url["ENGINE"].endswith("postgresql"):
        import psycopg

        name = f"migration_{uuid.uuid4().hex[:12]}"
        dsn = dict(host=url["HOST"], port=url["PORT"], user=url["USER"], dbname=url["NAME"])
        with psycopg.connect(**dsn, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(**dsn, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}"')

        return f"postgres://{url['USER']}@{url['HOST']}:{url['PORT']}/{name}", drop
    path = REPO_ROOT / "data" / "test-run" / f"migration-{uuid.uuid4().hex[:12]}.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)


@pytest.mark.django_db
def test_each_user_gets_a_personal_organisation_with_everything_they_owned() -> None:
    database_url, drop = _scratch_database()
    try:
        env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_ENV": "development"}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        drop()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])

    assert {name: (u["memberships"], u["personal"], u["active"]) for name, u in result.items()} == {
        name: (1, 1, True) for name in ("Alice", "alice", "rita", "root")
    }
    assert {name: u["role"] for name, u in result.items()} == {
        "alice": "member",
        "rita": "reviewer",
        "Alice": "admin",
        "root": "admin",  # a superuser administers their own organisation
    }
    slugs = [u["slug"] for u in result.values()]
    assert len(set(slugs)) == 4 and "alice" in slugs  # "Alice" and "alice" slugify alike: one got a suffix
    for name in ("alice", "rita"):
        user = result[name]
        # Every object is in the owner's personal organisation, none elsewhere.
        assert user["owned"] == [["Batch", 0, 1], ["Conversation", 0, 1], ["Document", 0, 1], ["Job", 0, 1]]
        assert user["extractions"] == 1 and user["events"] == 1
        # Keys act in the personal organisation with every scope, as they did before scopes.
        assert user["keys"] == [[True, ["read", "write", "review", "admin"]]]
