"""Create the first admin account if there is none; idempotent (`scripts/start.sh` runs it on
every start). The password comes from ADMIN_PASSWORD, or is generated, printed once and saved to
`<DATA_DIR>/admin_password` (mode 0600) so the operator can find it again."""

import os
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.models import User
from accounts.roles import Role
from accounts.services import user_create


class Command(BaseCommand):
    help = "Create the admin account on first run."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options) -> None:
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("admin account exists")
            return
        password = (
            os.environ.get("ADMIN_PASSWORD") or None
        )  # the one env read outside settings: a one-off secret
        generated = password is None
        if generated:
            password = secrets.token_urlsafe(12)
        user_create(username=username, password=password, role=Role.ADMIN, is_superuser=True)
        if generated:
            path = settings.DATA_DIR / "admin_password"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(password + "\n")
            self.stdout.write(
                f"created admin account {username!r} with password {password} (saved to {path})"
            )
        else:
            self.stdout.write(f"created admin account {username!r} with the password from ADMIN_PASSWORD")
