"""Who is asking, in which organisation, with what rights: the `Scope` every selector takes.

A request acts in exactly one organisation:
- with an API key, the key's organisation (a key never reaches another one);
- otherwise the `X-Organization` header (an organisation's slug) when the user is a member of it;
- otherwise the organisation chosen with the portal's switcher (`User.active_organization`);
- otherwise the user's personal organisation (made on first use if the user has none).

What the caller may do is the membership's role in that organisation (member < reviewer < admin),
and with an API key also the key's scopes. Site staff keep the Django admin; inside an
organisation they are what their membership says.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from accounts.models import ApiKey, ApiKeyScope, Membership, Organization, User
from accounts.roles import ROLE_ORDER, Role
from docplatform.errors import NotFound, PermissionDenied

ORGANIZATION_HEADER = "HTTP_X_ORGANIZATION"
_REQUEST_ATTRIBUTE = "_docplatform_scope"


@dataclass(frozen=True)
class Scope:
    user: User | None  # None: the platform itself (Scope.system)
    organization: Organization
    role: Role
    api_key: ApiKey | None = None

    @classmethod
    def system(cls, organization: Organization) -> Scope:
        """The platform acting for an organisation (a worker, retention): reads its objects, no
        user, no rights of a member."""
        return cls(user=None, organization=organization, role=Role.MEMBER)

    def has_role(self, role: Role) -> bool:
        return ROLE_ORDER.index(self.role) >= ROLE_ORDER.index(role)

    def has_key_scope(self, scope: ApiKeyScope) -> bool:
        """True without an API key: a session or JWT acts with the user's whole role."""
        return self.api_key is None or scope.value in self.api_key.scopes

    @property
    def can_review(self) -> bool:
        return self.has_role(Role.REVIEWER) and self.has_key_scope(ApiKeyScope.REVIEW)

    @property
    def can_administer(self) -> bool:
        return self.has_role(Role.ADMIN) and self.has_key_scope(ApiKeyScope.ADMIN)

    def require_review(self) -> None:
        if not self.can_review:
            raise PermissionDenied("Reviewing needs the reviewer role in this organisation.")

    def require_admin(self) -> None:
        if not self.can_administer:
            raise PermissionDenied("This needs the admin role in this organisation.")


def _unique_slug(base: str) -> str:
    base = (slugify(base) or "org")[:50]
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def personal_organization(user: User, *, role: Role | None = None) -> Organization:
    """The user's personal organisation, made if missing (users made outside `user_create`)."""
    membership = (
        Membership.objects.select_related("organization")
        .filter(user=user, organization__personal=True)
        .first()
    )
    if membership is not None:
        return membership.organization
    wanted = role or (Role.ADMIN if user.is_superuser else _site_role(user))
    for _ in range(5):
        try:
            with transaction.atomic():
                organization = Organization.objects.create(
                    name=user.get_username(), slug=_unique_slug(user.get_username()), personal=True
                )
                Membership.objects.create(user=user, organization=organization, role=wanted.value)
                return organization
        except IntegrityError:  # two first requests of a new user at once: the slug raced
            continue
    raise RuntimeError(f"could not make a personal organisation for {user.get_username()}")


def _site_role(user: User) -> Role:
    names = {group.name for group in user.groups.all()}
    return next((role for role in reversed(ROLE_ORDER) if role.value in names), Role.MEMBER)


def scope_for(
    user: User, *, organization: Organization | None = None, api_key: ApiKey | None = None
) -> Scope:
    """The scope of `user` in `organization` (default: the active, else the personal one).
    NotFound when the user is no member: the organisation does not exist for them."""
    if api_key is not None:
        organization = api_key.organization
    if organization is None:
        organization = user.active_organization or personal_organization(user)
    membership = Membership.objects.filter(user=user, organization=organization).first()
    if membership is None:
        if organization.pk == getattr(user, "active_organization_id", None):  # removed since
            return scope_for(user, organization=personal_organization(user))
        raise NotFound("Organisation not found.")
    return Scope(user=user, organization=organization, role=Role(membership.role), api_key=api_key)


def scope_of(request) -> Scope:
    """The scope of an authenticated request (Django's or DRF's), computed once per request."""
    django_request = getattr(request, "_request", request)
    cached = getattr(django_request, _REQUEST_ATTRIBUTE, None)
    if cached is not None:
        return cached
    user = request.user
    api_key = getattr(request, "auth", None)
    api_key = api_key if isinstance(api_key, ApiKey) else None
    organization = None
    slug = django_request.META.get(ORGANIZATION_HEADER, "").strip()
    if api_key is None and slug:
        organization = Organization.objects.filter(slug=slug, memberships__user=user).first()
        if organization is None:
            raise NotFound(f"Organisation {slug!r} not found.")
    scope = scope_for(user, organization=organization, api_key=api_key)
    setattr(django_request, _REQUEST_ATTRIBUTE, scope)
    return scope


def set_request_scope(request, scope: Scope) -> None:
    """For callers that authenticate themselves (the /v1 views): remember the request's scope."""
    setattr(getattr(request, "_request", request), _REQUEST_ATTRIBUTE, scope)
