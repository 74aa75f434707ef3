"""The organisation page, the header's switcher and the keys page's scopes and expiry through
Django's test client: who may change members, read and export the audit trail, switch where;
another organisation's members never shown. The flows in a browser: test_browser_organizations.py."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, Membership, Organization
from accounts.roles import Role
from accounts.scope import personal_organization, scope_for
from accounts.services import api_key_create
from vision.models import ExtractionEvent, ExtractionEventAction

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def admin_of_team(user_factory, team):
    return user_factory(Role.ADMIN, organization=team)


def test_organization_page_lists_the_members_with_their_roles(user_factory, team, admin_of_team) -> None:
    reviewer = user_factory(Role.REVIEWER, organization=team)
    response = _client(admin_of_team).get("/organization/")
    assert response.status_code == 200
    members = {m.user.username: m.role for m in response.context["members"]}
    assert members == {admin_of_team.username: "admin", reviewer.username: "reviewer"}
    content = response.content.decode()
    assert 'id="member-add"' in content and "Reviewer" in content and "Administrator" in content


def test_a_member_cannot_add_members(user_factory, team) -> None:
    member = user_factory(Role.MEMBER, organization=team)
    newcomer = user_factory()
    response = _client(member).post(
        "/organization/members/add/", {"username": newcomer.username, "role": "member"}, follow=True
    )
    assert response.status_code == 200
    assert b'class="error"' in response.content and b"admin role" in response.content
    assert not Membership.objects.filter(user=newcomer, organization=team).exists()
    assert 'id="member-add"' not in response.content.decode()  # the page offers no such form


def test_an_admin_adds_changes_and_removes_a_member(user_factory, team, admin_of_team) -> None:
    newcomer = user_factory()
    client = _client(admin_of_team)
    added = client.post(
        "/organization/members/add/", {"username": newcomer.username, "role": "reviewer"}, follow=True
    )
    assert f"{newcomer.username} added.".encode() in added.content
    assert Membership.objects.get(user=newcomer, organization=team).role == "reviewer"

    client.post("/organization/members/role/", {"user_id": newcomer.pk, "role": "member"})
    assert Membership.objects.get(user=newcomer, organization=team).role == "member"

    key = api_key_create(scope=scope_for(newcomer, organization=team), name="theirs").api_key
    client.post("/organization/members/remove/", {"user_id": newcomer.pk})
    assert not Membership.objects.filter(user=newcomer, organization=team).exists()
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_the_last_admin_keeps_the_role_and_a_bad_role_is_refused(team, admin_of_team) -> None:
    client = _client(admin_of_team)
    kept = client.post(
        "/organization/members/role/", {"user_id": admin_of_team.pk, "role": "member"}, follow=True
    )
    assert b"at least one admin" in kept.content
    assert Membership.objects.get(user=admin_of_team, organization=team).role == "admin"
    bad = client.post("/organization/members/add/", {"username": "x", "role": "owner"}, follow=True)
    assert b"Choose a role." in bad.content


def test_personal_organization_has_no_member_management(user_factory) -> None:
    owner = user_factory(Role.ADMIN)  # admin of the personal organisation
    client = _client(owner)
    page = client.get("/organization/").content.decode()
    assert 'id="member-add"' not in page and "create a team organisation below" in page
    other = user_factory()
    client.post("/organization/members/add/", {"username": other.username, "role": "member"})
    assert not Membership.objects.filter(user=other, organization=personal_organization(owner)).exists()


def test_another_organizations_members_are_never_listed(user_factory, team, admin_of_team) -> None:
    other_team = Organization.objects.create(name="Elsewhere Ltd", slug="elsewhere")
    outsider = user_factory(Role.ADMIN, organization=other_team)
    for client in (_client(admin_of_team), _client(user_factory(Role.MEMBER, organization=team))):
        response = client.get("/organization/")
        content = response.content.decode()
        assert outsider.username not in content and "Elsewhere Ltd" not in content
        assert all(m.organization_id == team.pk for m in response.context["members"])
        assert other_team not in response.context["my_organizations"]


def test_create_a_team_organization_makes_its_creator_admin_and_switches(user_factory) -> None:
    user = user_factory()
    client = _client(user)
    response = client.post("/organization/new/", {"name": "Accounts payable"}, follow=True)
    created = Organization.objects.get(name="Accounts payable")
    assert not created.personal
    assert Membership.objects.get(user=user, organization=created).role == "admin"
    user.refresh_from_db()
    assert user.active_organization == created
    assert response.context["current_scope"].organization == created
    assert 'id="member-add"' in response.content.decode()
    empty = client.post("/organization/new/", {"name": "  "}, follow=True)
    assert b"needs a name" in empty.content


def test_switcher_refuses_an_organization_the_user_is_not_a_member_of(user_factory, team) -> None:
    user = user_factory()
    client = _client(user)
    assert client.post("/organization/switch/", {"organization": team.pk}).status_code == 404
    assert client.post("/organization/switch/", {"organization": "x"}).status_code == 404
    assert client.get("/organization/switch/").status_code == 405
    user.refresh_from_db()
    assert user.active_organization == personal_organization(user)


def test_switcher_switches_and_redirects_only_to_a_safe_next(user_factory, team) -> None:
    user = user_factory(Role.MEMBER, organization=team)
    personal = personal_organization(user)
    client = _client(user)
    page = client.get("/keys/").content.decode()
    assert 'id="org-select"' in page and "Team" in page and f'value="{personal.pk}"' in page
    back = client.post("/organization/switch/", {"organization": personal.pk, "next": "/keys/"})
    assert back.status_code == 302 and back["Location"] == "/keys/"
    user.refresh_from_db()
    assert user.active_organization == personal
    evil = client.post("/organization/switch/", {"organization": team.pk, "next": "https://evil.example/"})
    assert evil["Location"] == "/"
    assert client.get("/").context["current_scope"].organization == team


def test_audit_trail_for_reviewers_and_csv_for_admins_only(user_factory, team, admin_of_team) -> None:
    ExtractionEvent.objects.create(
        organization=team,
        document_id=41,
        actor=admin_of_team,
        action=ExtractionEventAction.FIELD_UPDATED,
        field="total",
        comment="=HYPERLINK(1)",
    )
    elsewhere = Organization.objects.create(name="Elsewhere", slug="elsewhere-audit")
    ExtractionEvent.objects.create(
        organization=elsewhere, document_id=999, action=ExtractionEventAction.VIEWED
    )

    member = _client(user_factory(Role.MEMBER, organization=team))
    assert 'id="audit-list"' not in member.get("/organization/").content.decode()
    assert member.get("/organization/audit.csv").status_code in (403, 404)
    reviewer = _client(user_factory(Role.REVIEWER, organization=team))
    page = reviewer.get("/organization/").content.decode()
    assert 'id="audit-list"' in page and "field_updated" in page and 'id="audit-export"' not in page
    assert reviewer.get("/organization/audit.csv").status_code in (403, 404)

    response = _client(admin_of_team).get("/organization/audit.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["time", "actor", "action", "document_id", "extraction_id", "field", "comment"]
    assert len(rows) == 2  # the other organisation's event is not there
    assert rows[1][1:] == [admin_of_team.username, "field_updated", "41", "", "total", "'=HYPERLINK(1)"]


def test_review_link_follows_the_role_in_the_current_organization(user_factory, team) -> None:
    user = user_factory(Role.MEMBER)  # a member in the personal organisation
    client = _client(user)
    assert b'href="/review/"' not in client.get("/").content
    Membership.objects.create(user=user, organization=team, role="reviewer")
    client.post("/organization/switch/", {"organization": team.pk})
    assert b'href="/review/"' in client.get("/").content
    assert client.get("/review/").status_code == 200


def test_header_context_never_raises(client, user_factory) -> None:
    assert client.get("/login/").status_code == 200  # anonymous: no scope, no switcher
    assert b'id="org-select"' not in client.get("/login/").content
    member = _client(user_factory())
    assert member.get("/no-such-page/").status_code == 404
    refused = member.get("/review/")  # the 403 page has the header, with the switcher
    assert refused.status_code == 403 and b'id="org-select"' in refused.content

    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    from accounts.context_processors import organization

    bad_header = RequestFactory().get("/", HTTP_X_ORGANIZATION="not-mine")
    bad_header.user = member.user
    assert organization(bad_header) == {"current_scope": None, "my_organizations": []}
    anonymous = RequestFactory().get("/")
    anonymous.user = AnonymousUser()
    assert organization(anonymous) == {"current_scope": None, "my_organizations": []}
    assert organization(RequestFactory().get("/")) == {"current_scope": None, "my_organizations": []}


def test_keys_page_scopes_expiry_and_organization(user_factory, team) -> None:
    member = user_factory(Role.MEMBER, organization=team)
    client = _client(member)
    page = client.get("/keys/").content.decode()
    assert 'value="read"' in page and 'value="write"' in page
    assert 'value="review"' not in page and 'value="admin"' not in page
    assert "“Team”" in page
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    created = client.post(
        "/keys/", {"name": "reader", "scopes_given": "1", "scopes": ["read"], "expires": tomorrow}
    )
    key = created.context["created"].api_key
    assert key.scopes == ["read"] and key.organization == team and key.expires_at > timezone.now()
    assert '<code class="tag">read</code>' in created.content.decode()
    refused = client.post("/keys/", {"name": "x", "scopes_given": "1", "scopes": ["review"]})
    assert "error" in refused.context and "reviewer role" in refused.context["error"]
    none = client.post("/keys/", {"name": "x", "scopes_given": "1"})
    assert none.context["error"] == "Choose at least one scope."
    past = client.post(
        "/keys/", {"name": "x", "scopes_given": "1", "scopes": ["read"], "expires": "2000-01-01"}
    )
    assert past.context["error"] == "The expiry date must be today or later."
    assert ApiKey.objects.filter(user=member).count() == 1


def test_admins_see_everyones_keys_with_owner_and_expired_ones_marked(
    user_factory, team, admin_of_team
) -> None:
    member = user_factory(Role.MEMBER, organization=team)
    theirs = api_key_create(scope=scope_for(member, organization=team), name="their script").api_key
    ApiKey.objects.filter(pk=theirs.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    page = _client(admin_of_team).get("/keys/").content.decode()
    assert "their script" in page and member.username in page and "expired" in page
    assert 'value="admin"' in page and 'value="review"' in page
    assert (
        "their script"
        not in _client(user_factory(Role.MEMBER, organization=team)).get("/keys/").content.decode()
    )


def test_organization_page_in_chinese(user_factory, team, admin_of_team) -> None:
    content = _client(admin_of_team).get("/organization/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    for text in ("成员", "添加成员", "创建团队组织", "审计记录", "导出 CSV", "管理员"):
        assert text in content, text
