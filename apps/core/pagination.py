"""Cursor pages whose every input is checked: a cursor or a page size the API did not hand
out is a 400 with a code, never a 500 and never silently replaced by a default.

DRF decodes a cursor leniently (text that is not base64 is skipped: ``%%%%`` was the first
page) and puts its position straight into the query: a position that is not a value of the
ordering column (a tampered cursor) raised in the database layer, a 500.  Every cursor of
the API is therefore decoded strictly and its position checked against that column; any
cursor the API could not have handed out is 400 ``invalid_cursor`` (DRF's own 404 included).
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any
from urllib import parse

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Field, Model, QuerySet
from rest_framework import pagination, status
from rest_framework.exceptions import APIException, NotFound, ValidationError

from apps.core import timestamps

_CURSOR_KEYS = {"o", "r", "p"}  # offset, reverse, position: what DRF's encode_cursor writes
_DIGITS = re.compile(r"[0-9]{1,6}")  # str.isdigit() also takes "²", which int() refuses


class InvalidCursor(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Invalid cursor: follow the `next` or `previous` link of a page."
    default_code = "invalid_cursor"


def _check_encoding(encoded: str) -> None:
    """DRF's decoder skips what is not base64 (``%%%%`` read as no cursor: the first page) and
    ignores unknown keys; a cursor it made is strict base64 of its own keys, each given once."""
    try:
        text = base64.b64decode(encoded.encode("ascii"), validate=True).decode("ascii")
        keys = parse.parse_qs(text, keep_blank_values=True, strict_parsing=True)
    except (UnicodeError, ValueError):  # binascii.Error is a ValueError
        raise InvalidCursor() from None
    if not keys.keys() <= _CURSOR_KEYS or any(len(values) != 1 for values in keys.values()):
        raise InvalidCursor()


class CursorPagination(pagination.CursorPagination):
    """DRF's cursor pages with the cursor's position checked and a strict ``page_size``."""

    def paginate_queryset(self, queryset: QuerySet[Any], request: Any, view: Any = None) -> list[Any] | None:
        self.queryset_model = queryset.model  # what decode_cursor checks the position against
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Any) -> pagination.Cursor | None:
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded:  # empty: no cursor, as any empty query value
            _check_encoding(encoded)
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise InvalidCursor() from None
        if cursor is not None and cursor.position is not None:
            self._check_position(str(cursor.position))
        return cursor

    def _check_position(self, position: str) -> None:
        """The position must be a value of the first ordering column, as the cursor's query compares it."""
        model: type[Model] = self.queryset_model
        field = model._meta.get_field(self.ordering[0].lstrip("-"))
        assert isinstance(field, Field)  # the ordering is on a column
        try:
            value = field.to_python(position)
        except DjangoValidationError:
            raise InvalidCursor() from None
        if isinstance(value, datetime) and not timestamps.in_range(value):
            raise InvalidCursor()

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        """``page_size`` with its bounds, so that a client (or the fuzzer) knows the valid range."""
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 1, "maximum": self.max_page_size}
        return parameters

    def get_page_size(self, request: Any) -> int:
        # DRF falls back to the default for a page_size it cannot read; say so instead.
        raw = request.query_params.get(self.page_size_query_param)
        maximum, name = self.max_page_size or 0, self.page_size_query_param or "page_size"
        if raw is not None and not (_DIGITS.fullmatch(raw) and 1 <= int(raw) <= maximum):
            raise ValidationError({name: [f"An integer from 1 to {maximum}."]})
        size = super().get_page_size(request)
        assert size is not None  # page_size is set on every paginator here
        return size
