"""Each existing user gets a personal organisation holding what they own, so nothing changes for
them: their role in it is their site role (admin for superusers), it is their active
organisation, and their API keys act in it with every scope (as they did before scopes existed).
The documents, jobs and the rest follow in vision's 0010_fill_organizations."""

from django.db import migrations
from django.utils.text import slugify

ROLE_ORDER = ["member", "reviewer", "admin"]
ALL_SCOPES = ["read", "write", "review", "admin"]


def personal_organizations(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    Organization = apps.get_model("accounts", "Organization")
    Membership = apps.get_model("accounts", "Membership")
    ApiKey = apps.get_model("accounts", "ApiKey")
    taken = set(Organization.objects.values_list("slug", flat=True))
    for user in User.objects.order_by("pk").prefetch_related("groups"):
        if Membership.objects.filter(user=user, organization__personal=True).exists():
            continue
        base = (slugify(user.username) or "org")[:50]
        slug, n = base, 1
        while slug in taken:
            n += 1
            slug = f"{base}-{n}"
        taken.add(slug)
        groups = {group.name for group in user.groups.all()}
        role = "admin" if user.is_superuser else next((r for r in reversed(ROLE_ORDER) if r in groups), "member")
        organization = Organization.objects.create(name=user.username, slug=slug, personal=True)
        Membership.objects.create(user=user, organization=organization, role=role)
        user.active_organization = organization
        user.save(update_fields=["active_organization"])
        ApiKey.objects.filter(user=user, organization__isnull=True).update(organization=organization, scopes=ALL_SCOPES)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_organizations")]

    operations = [migrations.RunPython(personal_organizations, migrations.RunPython.noop)]
