"""Serializer fields that take a JSON value of the documented type only.

DRF's CharField turns a number or a boolean into its text, so ``{"label": 12}`` would be
accepted where the schema says string.  The API's input strings are ``StrictCharField``;
``STRICT_FIELD_MAPPING`` makes model serializers use it for model text columns.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from rest_framework import serializers


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "Expected a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


STRICT_FIELD_MAPPING = {
    **serializers.ModelSerializer.serializer_field_mapping,
    models.CharField: StrictCharField,
    models.TextField: StrictCharField,
}
