"""Writes on users, organisations, memberships, API keys and /v1 usage. Views, admin actions and
scripts call these."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.keys import VISIBLE_PREFIX_LENGTH, api_key_generate, api_key_hash
from accounts.models import ApiKey, ApiKeyScope, ApiUsage, Membership, Organization, User
from accounts.roles import ROLE_ORDER, Role
from accounts.scope import Scope, _unique_slug, personal_organization
from docplatform.errors import Conflict, NotFound, ValidationFailed

# last_used_at is a hint for the user, not an audit log: one write a minute per key is enough.
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)
MAX_ACTIVE_API_KEYS = 50


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    raw_key: str  # shown to the user once, never stored


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str | None,
    email: str = "",
    role: Role = Role.MEMBER,
    is_superuser: bool = False,
) -> User:
    user = User(
        username=username, email=email, is_staff=is_superuser or role == Role.ADMIN, is_superuser=is_superuser
    )
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    user_set_role(user=user, role=role)
    organization = personal_organization(user, role=role)
    user.active_organization = organization
    user.save(update_fields=["active_organization"])
    return user


@transaction.atomic
def user_set_role(*, user: User, role: Role) -> None:
    """Put the user in exactly the group of `role` (the site role: the Django admin's permissions)
    and give the user that role in their personal organisation."""
    role_groups = Group.objects.filter(name__in=[r.value for r in ROLE_ORDER])
    user.groups.remove(*role_groups)
    user.groups.add(Group.objects.get(name=role.value))
    if role == Role.ADMIN and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    Membership.objects.filter(user=user, organization__personal=True).update(role=role.value)


@transaction.atomic
def organization_create(*, user: User, name: str) -> Organization:
    """A team organisation; its creator is its first admin."""
    name = name.strip()
    if not name:
        raise ValidationFailed("An organisation needs a name.")
    organization = Organization.objects.create(name=name[:100], slug=_unique_slug(name))
    Membership.objects.create(user=user, organization=organization, role=Role.ADMIN.value)
    return organization


def organization_switch(*, user: User, organization_id: int) -> Organization:
    """Make `organization_id` the one the user's portal and JWT requests act in."""
    membership = (
        Membership.objects.select_related("organization")
        .filter(user=user, organization_id=organization_id)
        .first()
    )
    if membership is None:
        raise NotFound("Organisation not found.")
    user.active_organization = membership.organization
    user.save(update_fields=["active_organization"])
    return membership.organization


def _admins_left(organization: Organization, *, without: int) -> bool:
    admins = Membership.objects.filter(organization=organization, role=Role.ADMIN.value)
    return admins.exclude(user_id=without).exists()


@transaction.atomic
def membership_add(*, scope: Scope, username: str, role: Role) -> Membership:
    scope.require_admin()
    if scope.organization.personal:
        raise ValidationFailed("A personal organisation has no other members; create a team organisation.")
    user = User.objects.filter(username=username.strip(), is_active=True).first()
    if user is None:
        raise NotFound(f"No user {username!r}.")
    try:
        with transaction.atomic():
            return Membership.objects.create(
                user=user, organization=scope.organization, role=Role(role).value
            )
    except IntegrityError:
        raise Conflict(f"{user.username} is already a member.") from None


@transaction.atomic
def membership_set_role(*, scope: Scope, user_id: int, role: Role) -> Membership:
    scope.require_admin()
    membership = (
        Membership.objects.select_for_update()
        .filter(organization=scope.organization, user_id=user_id)
        .first()
    )
    if membership is None:
        raise NotFound("No such member.")
    if Role(role) != Role.ADMIN and not _admins_left(scope.organization, without=user_id):
        raise ValidationFailed("An organisation keeps at least one admin.")
    membership.role = Role(role).value
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, scope: Scope, user_id: int) -> None:
    """Remove a member; their API keys of this organisation are revoked with it."""
    scope.require_admin()
    membership = Membership.objects.filter(organization=scope.organization, user_id=user_id).first()
    if membership is None:
        raise NotFound("No such member.")
    if scope.organization.personal:
        raise ValidationFailed("The owner of a personal organisation cannot be removed.")
    if not _admins_left(scope.organization, without=user_id):
        raise ValidationFailed("An organisation keeps at least one admin.")
    membership.delete()
    ApiKey.objects.filter(organization=scope.organization, user_id=user_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    User.objects.filter(pk=user_id, active_organization=scope.organization).update(active_organization=None)


DEFAULT_KEY_SCOPES = (ApiKeyScope.READ, ApiKeyScope.WRITE)


@transaction.atomic
def api_key_create(
    *, scope: Scope, name: str, scopes: list[str] | None = None, expires_at: datetime | None = None
) -> CreatedApiKey:
    """A key of the caller in the caller's organisation. Its scopes are capped at what the
    caller's role allows: a member cannot make a review key."""
    name = name.strip()
    if not name:
        raise ValidationFailed("An API key needs a name.")
    wanted = [ApiKeyScope(s) for s in scopes] if scopes is not None else list(DEFAULT_KEY_SCOPES)
    if not wanted:
        raise ValidationFailed("An API key needs at least one scope.")
    if ApiKeyScope.REVIEW in wanted and not scope.has_role(Role.REVIEWER):
        raise ValidationFailed("The review scope needs the reviewer role in this organisation.")
    if ApiKeyScope.ADMIN in wanted and not scope.has_role(Role.ADMIN):
        raise ValidationFailed("The admin scope needs the admin role in this organisation.")
    if scope.api_key is not None and not all(scope.has_key_scope(s) for s in wanted):
        raise ValidationFailed("A key cannot make a key with scopes it does not have.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("expires_at must be in the future.")
    active = ApiKey.objects.filter(user=scope.user, organization=scope.organization, revoked_at__isnull=True)
    if active.count() >= MAX_ACTIVE_API_KEYS:
        raise ValidationFailed(f"At most {MAX_ACTIVE_API_KEYS} active API keys per user; revoke one first.")
    raw_key = api_key_generate()
    api_key = ApiKey.objects.create(
        user=scope.user,
        organization=scope.organization,
        name=name,
        scopes=sorted({s.value for s in wanted}, key=[s.value for s in ApiKeyScope].index),
        expires_at=expires_at,
        prefix=raw_key[:VISIBLE_PREFIX_LENGTH],
        key_hash=api_key_hash(raw_key),
    )
    return CreatedApiKey(api_key=api_key, raw_key=raw_key)


def api_key_revoke(*, scope: Scope, key_id: int) -> ApiKey:
    """The caller's own key, or any key of the organisation for its admins."""
    keys = ApiKey.objects.filter(organization=scope.organization, pk=key_id, revoked_at__isnull=True)
    if not scope.can_administer:
        keys = keys.filter(user=scope.user)
    api_key = keys.first()
    if api_key is None:
        raise NotFound("No such API key.")
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["revoked_at"])
    return api_key


def api_usage_record(*, scope: Scope, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
    """Count one /v1 request of the scope's organisation and key: one UPDATE, an INSERT the first
    time of the day."""
    day = timezone.localdate()
    key = scope.api_key
    rows = ApiUsage.objects.filter(organization=scope.organization, api_key=key, day=day)
    increments = {
        "requests": F("requests") + 1,
        "prompt_tokens": F("prompt_tokens") + prompt_tokens,
        "completion_tokens": F("completion_tokens") + completion_tokens,
    }
    if rows.update(**increments):
        return
    try:
        with transaction.atomic():
            ApiUsage.objects.create(
                organization=scope.organization,
                api_key=key,
                day=day,
                requests=1,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
    except IntegrityError:  # another request of the same key made the row first
        rows.update(**increments)


def api_key_touch(*, api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < API_KEY_TOUCH_INTERVAL:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
