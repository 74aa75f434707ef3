"""Create the role groups with their permissions. Each role includes the ones below it.

The permission lists are frozen here (not imported from code) so this migration means the same
thing forever; later apps add their permissions to these groups in their own migrations.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

MEMBER = ["add_apikey", "view_apikey", "delete_apikey"]
REVIEWER = [*MEMBER, "access_review"]
ADMIN = [*REVIEWER, "manage_users", "add_user", "change_user", "view_user", "change_apikey"]
ROLES = {"member": MEMBER, "reviewer": REVIEWER, "admin": ADMIN}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations ran (post_migrate); create the ones
    # of this app now so the groups can reference them.
    # The migration state's app config is a stub without models_module, which create_permissions
    # uses only as a "has models" flag.
    app_config = apps.get_app_config("accounts")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(Permission.objects.filter(content_type__app_label="accounts", codename__in=codenames))


def delete_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
