# Upstream secrets encrypted at rest (apps.core.secrets_at_rest): the columns become text (a
# Fernet token is longer than its text), the stored values are encrypted under the current key
# of AUDITGATE_SECRETS_KEYS (in auditgate.env, so it needs the ring), then the fields
# become EncryptedTextField, which changes nothing in the database.  Reversible: backwards, the
# values are decrypted (every key they were encrypted with must be in the ring) and the columns
# narrowed again.

from django.db import migrations, models

import apps.core.secrets_at_rest
from apps.core.secrets_at_rest import decrypt, encrypt

SECRETS = ("credential_value", "identity_key")


def _rewrite(state_apps, change):
    # The model as of this step: plain text fields, so the raw stored values are read and written.
    upstream = state_apps.get_model("gateway", "Upstream")
    for pk, *values in upstream.objects.order_by("pk").values_list("pk", *SECRETS):
        changed = {name: change(value) for name, value in zip(SECRETS, values) if value}
        if changed:
            upstream.objects.filter(pk=pk).update(**changed)


def encrypt_secrets(state_apps, schema_editor):
    _rewrite(state_apps, encrypt)


def decrypt_secrets(state_apps, schema_editor):
    _rewrite(state_apps, decrypt)


class Migration(migrations.Migration):

    dependencies = [
        ('gateway', '0004_upstream_websocket'),
    ]

    operations = [
        migrations.AlterField(
            model_name='upstream',
            name='credential_value',
            field=models.TextField(blank=True, max_length=1000),
        ),
        migrations.AlterField(
            model_name='upstream',
            name='identity_key',
            field=models.TextField(blank=True, help_text='HMAC key of the X-Auditgate-Identity header; empty: no header.', max_length=200),
        ),
        migrations.RunPython(encrypt_secrets, decrypt_secrets),
        migrations.AlterField(
            model_name='upstream',
            name='credential_value',
            field=apps.core.secrets_at_rest.EncryptedTextField(blank=True, max_length=1000),
        ),
        migrations.AlterField(
            model_name='upstream',
            name='identity_key',
            field=apps.core.secrets_at_rest.EncryptedTextField(blank=True, help_text='HMAC key of the X-Auditgate-Identity header; empty: no header.', max_length=200),
        ),
    ]
