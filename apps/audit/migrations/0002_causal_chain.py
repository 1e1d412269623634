# Schema version 2 of audit events: the causal chain (issue 14). The columns are added in
# the model's order, after every existing column, so the sealed column order is unchanged
# for version 1 rows (apps.audit.sealing).

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='auditevent',
            name='trace_id',
            field=models.CharField(blank=True, help_text='W3C Trace Context trace id.', max_length=32),
        ),
        migrations.AddField(
            model_name='auditevent',
            name='parent_event_id',
            field=models.BigIntegerField(blank=True, help_text='The gateway attempt whose upstream made this request through the gate.', null=True),
        ),
        migrations.AddField(
            model_name='auditevent',
            name='close_code',
            field=models.PositiveSmallIntegerField(blank=True, help_text="A WebSocket's close code.", null=True),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='schema_version',
            field=models.PositiveSmallIntegerField(default=2),
        ),
        migrations.AddIndex(
            model_name='auditevent',
            index=models.Index(fields=['parent_event_id'], name='audit_parent'),
        ),
    ]
