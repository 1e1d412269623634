# Per-upstream WebSocket limits (issue 14, goal 4): the relay (apps.gateway.wsrelay) closes a
# WebSocket after websocket_idle_timeout seconds without a message, and at websocket_max_duration.

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('gateway', '0003_apitoken_scopes'),
    ]

    operations = [
        migrations.AddField(
            model_name='upstream',
            name='websocket_idle_timeout',
            field=models.PositiveIntegerField(default=300, help_text='Seconds without a WebSocket message either way before the gateway closes it (1001).', validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(3600)]),
        ),
        migrations.AddField(
            model_name='upstream',
            name='websocket_max_duration',
            field=models.PositiveIntegerField(default=3600, help_text='Seconds a WebSocket may stay open at most; then the gateway closes it (1008).', validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(14400)]),
        ),
    ]
