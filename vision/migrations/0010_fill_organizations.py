"""What each user owned before organisations now belongs to their personal organisation (made by
accounts' 0004_personal_organizations); extractions and their events follow their document."""

from django.db import migrations
from django.db.models import OuterRef, Subquery


def fill(apps, schema_editor):
    Membership = apps.get_model("accounts", "Membership")
    personal = Membership.objects.filter(user=OuterRef("owner"), organization__personal=True).values(
        "organization"
    )[:1]
    for name in ("Document", "Batch", "Job", "Conversation"):
        model = apps.get_model("vision", name)
        model.objects.filter(organization__isnull=True).update(organization=Subquery(personal))
    Document = apps.get_model("vision", "Document")
    Extraction = apps.get_model("vision", "Extraction")
    Extraction.objects.filter(organization__isnull=True).update(
        organization=Subquery(Document.objects.filter(pk=OuterRef("document")).values("organization")[:1])
    )
    ExtractionEvent = apps.get_model("vision", "ExtractionEvent")
    ExtractionEvent.objects.filter(organization__isnull=True).update(
        organization=Subquery(Extraction.objects.filter(pk=OuterRef("extraction")).values("organization")[:1]),
        document_id=Subquery(Extraction.objects.filter(pk=OuterRef("extraction")).values("document")[:1]),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("vision", "0009_organizations"),
        ("accounts", "0004_personal_organizations"),
    ]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
