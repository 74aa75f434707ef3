"""Reads on API keys."""

from django.db.models import QuerySet

from accounts.keys import API_KEY_PREFIX, api_key_hash
from accounts.models import ApiKey, User


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    """The user's active keys; revoked ones are gone from the user's point of view."""
    return ApiKey.objects.filter(user=user, revoked_at__isnull=True)


def api_key_get_active(*, raw_key: str) -> ApiKey | None:
    if not raw_key.startswith(API_KEY_PREFIX):
        return None
    return (
        ApiKey.objects.select_related("user")
        .filter(key_hash=api_key_hash(raw_key), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
