"""Strict query filters: a value a filter cannot read is a 400, never silently ignored.

django-filter's boolean filter treats anything but true/false as "no filter" and its number
filter accepts fractions for integer columns: a caller asking for ``enabled=ture`` would get
every row and believe they were filtered.  Its date-time filters take any year, and a value
within a day of year 1 or 9999 overflowed into a 500 once turned into UTC for the database
(``apps.core.timestamps``).  Every FilterSet of the API derives from ``StrictFilterSet``, and
declares its date-time filters as ``IsoDateTimeFilter`` from here.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import django_filters
from django import forms
from django.db import models
from django_filters.fields import IsoDateTimeField as BaseIsoDateTimeField

from apps.core import timestamps
from apps.core.fields import NOT_A_BOOLEAN

_TRUE, _FALSE = ("true", "True", "1"), ("false", "False", "0")


class BooleanQueryField(forms.Field):
    """A boolean in the query string: true/True/1 or false/False/0, nothing else (django-filter
    would read any other text as "no filter")."""

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise forms.ValidationError(NOT_A_BOOLEAN, code="invalid")


class BooleanFilter(django_filters.BooleanFilter):
    field_class = BooleanQueryField


class StrictIntegerField(forms.IntegerField):
    """Digits only: Django's IntegerField also takes "0.0" and "1e2", which the schema's integer does not."""

    def to_python(self, value: Any) -> int | None:
        if isinstance(value, str) and value.strip() and not re.fullmatch(r"\s*[+-]?\d+\s*", value):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class IntegerFilter(django_filters.NumberFilter):
    field_class = StrictIntegerField


class IsoDateTimeField(BaseIsoDateTimeField):
    def to_python(self, value: Any) -> datetime | None:
        result = super().to_python(value)
        if result is not None and not timestamps.in_range(result):
            raise forms.ValidationError(timestamps.OUT_OF_RANGE, code="out_of_range")
        return result


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = IsoDateTimeField


class StrictFilterSet(django_filters.FilterSet):
    FILTER_DEFAULTS = {
        **django_filters.FilterSet.FILTER_DEFAULTS,
        models.DateTimeField: {"filter_class": IsoDateTimeFilter},
        models.BooleanField: {"filter_class": BooleanFilter},
        models.IntegerField: {"filter_class": IntegerFilter},
        models.BigIntegerField: {"filter_class": IntegerFilter},
        models.PositiveIntegerField: {"filter_class": IntegerFilter},
        models.PositiveSmallIntegerField: {"filter_class": IntegerFilter},
    }
