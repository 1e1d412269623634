from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="SinkCursor",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=64, unique=True)),
                ("kind", models.CharField(help_text="syslog or webhook", max_length=16)),
                ("low_water", models.BigIntegerField(default=0)),
                ("done", models.JSONField(blank=True, default=list)),
                ("assumed_gaps", models.JSONField(blank=True, default=list)),
                ("checkpoint_through", models.BigIntegerField(default=0)),
                ("events_sent", models.PositiveBigIntegerField(default=0)),
                ("checkpoints_sent", models.PositiveBigIntegerField(default=0)),
                ("last_sent_at", models.DateTimeField(blank=True, null=True)),
                ("last_lag_seconds", models.FloatField(blank=True, null=True)),
                ("last_error", models.CharField(blank=True, max_length=500)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
        ),
    ]
