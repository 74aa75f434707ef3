from django.contrib.auth.models import AbstractUser
from django.db import models

from accounts.roles import ROLE_ORDER, Role


class Organization(models.Model):
    """Who owns documents, jobs, batches, extractions, document types, conversations and API keys.

    Every user has a personal organisation (made with the user, or by the migration that brought
    organisations, holding what the user owned before); teams are organisations with several
    members. Every read of an owned object filters by the caller's organisation
    (`accounts.scope.Scope`), so another organisation's object does not exist for them.
    """

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    personal = models.BooleanField(default=False)  # made for one user; never has other members
    # Documents older than this many days are deleted with their files and derived data, except
    # those under legal hold (vision.services.retention); null: kept for ever.
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in one organisation: member < reviewer < admin, as `accounts.roles` says."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=[(r.value, r.value.title()) for r in ROLE_ORDER])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "user"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organization"], name="membership_unique_user_organization"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.organization_id} ({self.role})"


class User(AbstractUser):
    """The platform user. Custom from the first migration so fields can be added later without
    swapping AUTH_USER_MODEL on a live database."""

    class Meta:
        permissions = [
            ("access_review", "Can use the reviewer endpoints"),
            ("manage_users", "Can manage users and their roles"),
        ]

    # The organisation the portal and JWT requests act in, chosen with the portal's switcher (an
    # `X-Organization` header overrides it per request; an API key acts in its own organisation).
    active_organization = models.ForeignKey(
        Organization, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    @property
    def roles(self) -> list[str]:
        """The site-wide groups, for the Django admin. Inside an organisation the membership's
        role decides (`accounts.scope.Scope.role`)."""
        names = {group.name for group in self.groups.all()}
        if self.is_superuser:
            names.add(Role.ADMIN)
        return [role.value for role in ROLE_ORDER if role in names]


class ApiKeyScope(models.TextChoices):
    READ = "read", "Read"  # GET on /api
    WRITE = "write", "Write"  # uploads, jobs, batches, deletes, /v1
    REVIEW = "review", "Review"  # approve, reject and correct extractions (with a reviewer role)
    ADMIN = "admin", "Admin"  # the organisation's members, keys and settings (with an admin role)


class ApiKey(models.Model):
    """An API key of one user in one organisation. Only the SHA-256 of the key is stored; the raw
    key is shown once at creation. The key has 256 bits of randomness, so a fast unsalted hash is
    enough: there is nothing to brute-force. What a key may do is its scopes intersected with its
    user's role in its organisation."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    scopes = models.JSONField(default=list)  # ApiKeyScope values
    expires_at = models.DateTimeField(null=True, blank=True)  # null: until revoked
    name = models.CharField(max_length=100)
    # First characters of the raw key ("dp_" + 8), so users can tell their keys apart in a list.
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Updated at most once a minute per key, not on every request.
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        from django.utils import timezone

        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class ApiUsage(models.Model):
    """/v1 use per organisation, API key (null: JWT or session) and day: requests and tokens,
    added with one UPDATE per request (accounts.services.api_usage_record)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="usage")
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, null=True, blank=True, related_name="usage")
    day = models.DateField()
    requests = models.PositiveBigIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-day", "organization", "api_key"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "api_key", "day"], name="api_usage_unique_key_day"
            ),
            models.UniqueConstraint(
                fields=["organization", "day"],
                condition=models.Q(api_key__isnull=True),
                name="api_usage_unique_day",
            ),
        ]
