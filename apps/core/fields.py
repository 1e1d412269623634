"""Serializer fields that take a JSON value of the documented type only.

DRF's CharField turns a number or a boolean into its text, so ``{"label": 12}`` would be
accepted where the schema says string.  The API's input strings are ``StrictCharField``;
``STRICT_FIELD_MAPPING`` makes model serializers use it for model text columns.  Date-times
are ``StrictDateTimeField``: one day inside Python's range, so that no time zone overflows them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from rest_framework import serializers

from apps.core import timestamps


class StrictStringMixin:
    """Only a JSON string is a string (a number or a boolean is refused, not turned into text)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")  # type: ignore[attr-defined]
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(StrictStringMixin, serializers.CharField):
    default_error_messages = {"not_a_string": "Expected a string."}


class StrictSlugField(StrictStringMixin, serializers.SlugField):
    default_error_messages = {"not_a_string": "Expected a string."}


class StrictURLField(StrictStringMixin, serializers.URLField):
    default_error_messages = {"not_a_string": "Expected a string."}


class StrictEmailField(StrictStringMixin, serializers.EmailField):
    default_error_messages = {"not_a_string": "Expected a string."}


class StrictIPAddressField(StrictStringMixin, serializers.IPAddressField):
    default_error_messages = {"not_a_string": "Expected a string."}


NOT_A_BOOLEAN = "Expected true or false."


class StrictBooleanField(serializers.BooleanField):
    """A JSON body must send ``true`` or ``false`` (DRF would also take 0, 1 and "yes");
    an HTML form (the browsable API) sends text, which DRF's rules still read."""

    default_error_messages = {"invalid": NOT_A_BOOLEAN}

    def to_internal_value(self, data: Any) -> bool:
        request = self.context.get("request")
        is_json = request is not None and (request.content_type or "").startswith("application/json")
        if is_json and not isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictDateTimeField(serializers.DateTimeField):
    """DRF refuses only the values it cannot convert to UTC itself; a value within a day of
    year 1 or 9999 passed, and overflowed later in another time zone (a rule's, the policy's)."""

    default_error_messages = {"out_of_range": timestamps.OUT_OF_RANGE}

    def to_internal_value(self, value: Any) -> datetime:
        result = super().to_internal_value(value)
        if not timestamps.in_range(result):
            self.fail("out_of_range")
        return result


STRICT_FIELD_MAPPING = {
    **serializers.ModelSerializer.serializer_field_mapping,
    models.CharField: StrictCharField,
    models.TextField: StrictCharField,
    models.SlugField: StrictSlugField,
    models.URLField: StrictURLField,
    models.EmailField: StrictEmailField,
    models.GenericIPAddressField: StrictIPAddressField,
    models.BooleanField: StrictBooleanField,
    models.DateTimeField: StrictDateTimeField,
}
