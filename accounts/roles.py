"""Roles are Django groups. Each role includes the permissions of the ones below it:
member < reviewer < admin. The groups and their permissions are created by a data migration
(`0002_roles`); later apps add their own permissions to these groups in their migrations."""

from enum import StrEnum


class Role(StrEnum):
    MEMBER = "member"  # uses the platform: own documents, jobs, chats, API keys
    REVIEWER = "reviewer"  # also reviews and corrects extractions of all users
    ADMIN = "admin"  # also manages users and settings in the admin site


ROLE_ORDER = [Role.MEMBER, Role.REVIEWER, Role.ADMIN]

# The permission that opens reviewer-only endpoints.
REVIEW_PERMISSION = "accounts.access_review"

# What each role may do. The data migration 0002_roles froze the first version of the accounts
# part; `ensure_role_groups` keeps the groups in line with this, including apps migrated later.
MEMBER_PERMISSIONS = ["accounts.add_apikey", "accounts.view_apikey", "accounts.delete_apikey"]
REVIEWER_PERMISSIONS = [
    *MEMBER_PERMISSIONS,
    "accounts.access_review",
    "vision.view_extraction",
    "vision.change_extraction",
    "vision.view_extractionevent",
]
ADMIN_PERMISSIONS = [
    *REVIEWER_PERMISSIONS,
    "accounts.manage_users",
    "accounts.add_user",
    "accounts.change_user",
    "accounts.view_user",
    "accounts.change_apikey",
    "vision.*",  # every model of the vision app, in the Django admin
]
ROLE_PERMISSIONS = {
    Role.MEMBER: MEMBER_PERMISSIONS,
    Role.REVIEWER: REVIEWER_PERMISSIONS,
    Role.ADMIN: ADMIN_PERMISSIONS,
}


def ensure_role_groups(sender=None, apps=None, using: str = "default", **kwargs) -> None:
    """post_migrate handler: make sure the role groups exist with their permissions.

    Django emits post_migrate for every app after `migrate`, and also after the database flush
    between transactional tests, which empties every table, groups included; without this,
    whichever test ran after such a flush would find no role groups. Idempotent: it runs once per
    app and adds whatever permissions exist by then.
    """
    if apps is None:
        from django.apps import apps as global_apps

        apps = global_apps
    try:
        Group = apps.get_model("auth", "Group")
        Permission = apps.get_model("auth", "Permission")
    except LookupError:  # auth not migrated yet
        return
    from django.db.models import Q

    for role, names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role.value)
        wanted = Q(pk__in=[])
        for name in names:
            app_label, codename = name.split(".")
            if codename == "*":
                wanted |= Q(content_type__app_label=app_label)
            else:
                wanted |= Q(content_type__app_label=app_label, codename=codename)
        group.permissions.add(*Permission.objects.using(using).filter(wanted))
