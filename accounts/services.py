"""Writes on users, roles and API keys. Views, admin actions and scripts call these."""

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from accounts.keys import VISIBLE_PREFIX_LENGTH, api_key_generate, api_key_hash
from accounts.models import ApiKey, User
from accounts.roles import ROLE_ORDER, Role
from docplatform.errors import NotFound, ValidationFailed

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
    return user


@transaction.atomic
def user_set_role(*, user: User, role: Role) -> None:
    """Put the user in exactly the group of `role` (the groups carry the inherited permissions)."""
    role_groups = Group.objects.filter(name__in=[r.value for r in ROLE_ORDER])
    user.groups.remove(*role_groups)
    user.groups.add(Group.objects.get(name=role.value))
    if role == Role.ADMIN and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])


@transaction.atomic
def api_key_create(*, user: User, name: str) -> CreatedApiKey:
    name = name.strip()
    if not name:
        raise ValidationFailed("An API key needs a name.")
    if ApiKey.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_ACTIVE_API_KEYS:
        raise ValidationFailed(f"At most {MAX_ACTIVE_API_KEYS} active API keys per user; revoke one first.")
    raw_key = api_key_generate()
    api_key = ApiKey.objects.create(
        user=user, name=name, prefix=raw_key[:VISIBLE_PREFIX_LENGTH], key_hash=api_key_hash(raw_key)
    )
    return CreatedApiKey(api_key=api_key, raw_key=raw_key)


def api_key_revoke(*, user: User, key_id: int) -> ApiKey:
    api_key = ApiKey.objects.filter(user=user, pk=key_id, revoked_at__isnull=True).first()
    if api_key is None:
        raise NotFound("No such API key.")
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_touch(*, api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < API_KEY_TOUCH_INTERVAL:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
