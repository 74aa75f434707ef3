from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.roles import ensure_role_groups

        # For every app, after auth's handler created that app's permissions (auth is ready first).
        post_migrate.connect(ensure_role_groups, dispatch_uid="accounts.ensure_role_groups")
