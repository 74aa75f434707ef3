import pytest
from django.contrib.auth.models import Group

from accounts.roles import Role

pytestmark = pytest.mark.django_db


def test_role_groups_exist_with_inherited_permissions():
    perms = {group.name: {p.codename for p in group.permissions.all()} for group in Group.objects.all()}
    assert set(perms) >= {"member", "reviewer", "admin"}
    assert perms["member"] < perms["reviewer"] < perms["admin"]
    assert "access_review" in perms["reviewer"] and "access_review" not in perms["member"]


@pytest.mark.parametrize(("role", "expected"), [(Role.MEMBER, 403), (Role.REVIEWER, 200), (Role.ADMIN, 200)])
def test_reviewer_endpoint_by_role(api_client, user_factory, role, expected):
    api_client.force_authenticate(user_factory(role))
    assert api_client.get("/api/review/ping").status_code == expected


def test_member_cannot_reach_the_admin(client, user_factory):
    client.force_login(user_factory(Role.MEMBER))
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_admin_reaches_the_admin(client, user_factory):
    client.force_login(user_factory(Role.ADMIN, is_superuser=True))
    assert client.get("/admin/").status_code == 200


def test_role_groups_come_back_after_a_database_flush(transactional_db):
    """GIVEN the flush that transactional tests (and `manage.py flush`) do WHEN it empties every
    table THEN post_migrate recreates the role groups with their permissions."""
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0)
    reviewer = Group.objects.get(name="reviewer")
    assert reviewer.permissions.filter(codename="access_review").exists()
    assert set(Group.objects.values_list("name", flat=True)) >= {"member", "reviewer", "admin"}


def test_admin_role_can_manage_vision_models_in_the_admin(db, django_user_model):
    from django.contrib.auth.models import Group

    admin = django_user_model.objects.create_user(username="ops", password="x", is_staff=True)
    admin.groups.add(Group.objects.get(name="admin"))
    reviewer = django_user_model.objects.create_user(username="rev", password="x")
    reviewer.groups.add(Group.objects.get(name="reviewer"))
    member = django_user_model.objects.create_user(username="mem", password="x")
    member.groups.add(Group.objects.get(name="member"))
    assert admin.has_perm("vision.change_job") and admin.has_perm("vision.view_document")
    assert reviewer.has_perm("vision.change_extraction") and not reviewer.has_perm("vision.change_job")
    assert not member.has_perm("vision.view_extraction")
