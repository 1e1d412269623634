# Evidence capture, opt-in per upstream or per rule (issue 17, apps.audit.evidence).

import apps.gateway.validators
import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('gateway', '0006_upstream_sensitive'),
    ]

    operations = [
        migrations.AddField(
            model_name='accessrule',
            name='capture_evidence',
            field=models.BooleanField(default=False, help_text="Keep the bodies of the calls this rule allows as evidence (as the upstream's flag)."),
        ),
        migrations.AddField(
            model_name='upstream',
            name='capture_evidence',
            field=models.BooleanField(default=False, help_text='Keep the bodies of forwarded calls as evidence (auditors read them).'),
        ),
        migrations.AddField(
            model_name='upstream',
            name='evidence_max_bytes',
            field=models.PositiveIntegerField(default=65536, help_text='Bytes kept of each body, per direction (at most 1 MiB); beyond: the prefix, marked truncated.', validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(1048576)]),
        ),
        migrations.AddField(
            model_name='upstream',
            name='evidence_redact_fields',
            field=models.JSONField(blank=True, default=list, help_text='JSON keys and form fields whose values are replaced by [redacted], at any depth, any letter case.', validators=[apps.gateway.validators.validate_redact_fields]),
        ),
        migrations.AddField(
            model_name='upstream',
            name='evidence_redact_headers',
            field=models.JSONField(blank=True, default=list, help_text="Headers redacted besides Authorization, Cookie, Set-Cookie, the credential and the gateway's own.", validators=[apps.gateway.validators.validate_redact_headers]),
        ),
    ]
