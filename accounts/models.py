from django.contrib.auth.models import AbstractUser
from django.db import models

from accounts.roles import ROLE_ORDER, Role


class User(AbstractUser):
    """The platform user. Custom from the first migration so fields can be added later without
    swapping AUTH_USER_MODEL on a live database."""

    class Meta:
        permissions = [
            ("access_review", "Can use the reviewer endpoints"),
            ("manage_users", "Can manage users and their roles"),
        ]

    @property
    def roles(self) -> list[str]:
        names = {group.name for group in self.groups.all()}
        if self.is_superuser:
            names.add(Role.ADMIN)
        return [role.value for role in ROLE_ORDER if role in names]


class ApiKey(models.Model):
    """A personal API key. Only the SHA-256 of the key is stored; the raw key is shown once at
    creation. The key has 256 bits of randomness, so a fast unsalted hash is enough: there is
    nothing to brute-force."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
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
        return self.revoked_at is None
