"""Reads on organisations, memberships, API keys and /v1 usage. Every read takes the caller's
`Scope` (accounts.scope): another organisation's rows do not exist for it."""

from datetime import timedelta

from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from accounts.keys import API_KEY_PREFIX, api_key_hash
from accounts.models import ApiKey, ApiUsage, Membership, Organization
from accounts.scope import Scope


def api_key_list(*, scope: Scope) -> QuerySet[ApiKey]:
    """The caller's active keys of this organisation (all members' keys for its admins); revoked
    ones are gone from the user's point of view, expired ones are listed as expired."""
    keys = ApiKey.objects.filter(organization=scope.organization, revoked_at__isnull=True).select_related(
        "user"
    )
    return keys if scope.can_administer else keys.filter(user=scope.user)


def api_key_get_active(*, raw_key: str) -> ApiKey | None:
    """The key a request presents (not scoped: it is what decides the scope)."""
    if not raw_key.startswith(API_KEY_PREFIX):
        return None
    return (
        ApiKey.objects.select_related("user", "organization")
        .filter(key_hash=api_key_hash(raw_key), revoked_at__isnull=True, user__is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        # A key dies with its user's membership of its organisation.
        .filter(organization__memberships__user=F("user"))
        .first()
    )


def organization_list(*, scope: Scope) -> QuerySet[Organization]:
    """The organisations the caller is a member of (the portal's switcher)."""
    return Organization.objects.filter(memberships__user=scope.user).order_by("-personal", "name", "id")


def membership_list(*, scope: Scope) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=scope.organization)
        .select_related("user")
        .order_by("user__username")
    )


def api_usage_list(*, scope: Scope, days: int = 30) -> QuerySet[ApiUsage]:
    since = timezone.localdate() - timedelta(days=days)
    rows = ApiUsage.objects.filter(organization=scope.organization, day__gte=since).select_related("api_key")
    return rows if scope.can_administer else rows.filter(api_key__user=scope.user)


def api_usage_totals(*, scope: Scope, days: int = 30) -> dict[str, int]:
    totals = api_usage_list(scope=scope, days=days).aggregate(
        requests=Sum("requests"),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
    )
    return {k: v or 0 for k, v in totals.items()}
