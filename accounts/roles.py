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
