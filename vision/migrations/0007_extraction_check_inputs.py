from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("vision", "0006_document_types"),
    ]

    operations = [
        migrations.AddField(
            model_name="extraction",
            name="check_inputs",
            field=models.JSONField(default=dict),
        ),
    ]
