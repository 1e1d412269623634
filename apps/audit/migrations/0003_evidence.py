# Schema version 3 of audit events: evidence capture (issue 17). The evidence column is appended
# after every existing column (MariaDB adds it instantly, without copying the table), so the
# sealed column order is unchanged for version 1 and 2 rows (apps.audit.sealing). The captured
# bodies live outside the events, in blobs keyed by their SHA-256, with one link per event and
# direction (apps.audit.evidence.storage); both are insert-only for the app's account (^audit_).

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0002_causal_chain'),
    ]

    operations = [
        migrations.CreateModel(
            name='EvidenceBlob',
            fields=[
                ('sha256', models.CharField(max_length=64, primary_key=True, serialize=False)),
                ('size', models.PositiveIntegerField()),
                ('content', models.BinaryField()),
                ('stored_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.AddField(
            model_name='auditevent',
            name='evidence',
            field=models.JSONField(blank=True, help_text="Captured bodies' digests and headers, or null.", null=True),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='schema_version',
            field=models.PositiveSmallIntegerField(default=3),
        ),
        migrations.CreateModel(
            name='EvidenceLink',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('event_id', models.BigIntegerField()),
                ('direction', models.CharField(max_length=8)),
                ('sha256', models.CharField(max_length=64)),
            ],
            options={
                'indexes': [models.Index(fields=['sha256'], name='audit_evidence_blob')],
                'constraints': [models.UniqueConstraint(fields=('event_id', 'direction'), name='audit_evidence_event')],
            },
        ),
    ]
