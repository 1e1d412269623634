"""The OpenAPI 3 schema (drf-spectacular): the error shape, the token scheme, and the
error responses every operation can give, added in one place.

Views describe their own success responses, summaries and examples with
``extend_schema``; ``AutoSchema`` adds the errors that follow from how a view is
built (authentication, permissions, a request body, a path parameter, filters), so
no operation can forget one.  Codes are those of ``apps.core.errors`` and
``apps.gateway.choices.Reason``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from drf_spectacular import authentication
from drf_spectacular.openapi import AutoSchema as BaseAutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import permissions, serializers

from apps.core.refusals import REFUSALS

# status -> (description, codes); the first code is the usual one.  Example details: apps.core.refusals.
ERROR_CODES: dict[int, tuple[str, tuple[str, ...]]] = {
    400: (
        "The request is invalid: `errors` has the messages per field (`invalid`); or its body is not JSON the "
        "API reads (`parse_error`: malformed, or nested deeper than 32 levels); or its `cursor` is not one the API "
        "handed out (`invalid_cursor`).",
        ("invalid", "parse_error", "invalid_cursor"),
    ),
    401: ("No usable credentials.", ("not_authenticated", "authentication_failed", "token_expired", "token_revoked")),
    403: (
        "Authenticated, but not allowed.",
        ("permission_denied", "token_scope", "source_ip_not_allowed", "csrf_failed"),
    ),
    404: ("No such object (or not yours), or a page past the end.", ("not_found",)),
    411: ("The body was sent chunked, without a Content-Length. Send its length.", ("length_required",)),
    415: ("The body's Content-Type is not one the operation reads.", ("unsupported_media_type",)),
}


class ErrorSerializer(serializers.Serializer):
    """Every error answer of the API."""

    code = serializers.CharField(help_text="Stable and machine-readable, e.g. `token_expired`.")
    detail = serializers.CharField(help_text="For people; may change.")
    request_id = serializers.CharField(
        allow_null=True, help_text="Also in `X-Request-ID`, Apache's log and the audit trail."
    )
    errors = serializers.DictField(  # type: ignore[assignment]  # a field named like Serializer.errors
        required=False, help_text="Validation errors only: messages per field (`non_field_errors` for the whole)."
    )


def error_response(status: int) -> OpenApiResponse:
    description, codes = ERROR_CODES[status]
    listed = ", ".join(f"`{code}`" for code in codes)
    examples = [
        OpenApiExample(
            code,
            value={"code": code, "detail": REFUSALS[code].detail, "request_id": "ZT7b1X8AAQEAAB3xGk0AAAAB"},
            status_codes=[str(status)],
            response_only=True,
        )
        for code in codes
    ]
    if status == 400:
        examples[0].value["errors"] = {"name": ["This field is required."]}
    return OpenApiResponse(ErrorSerializer, description=f"{description} `code`: {listed}.", examples=examples)


class AutoSchema(BaseAutoSchema):
    """Adds the error responses that follow from the view's construction."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for status in self._error_statuses():
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(
                    error_response(status), str(status), direction=direction
                )
        return responses

    def _error_statuses(self) -> list[int]:
        statuses = []
        has_body = self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None
        filtered = getattr(self.view, "filterset_class", None) or getattr(self.view, "filterset_fields", None)
        if has_body or filtered or self._get_pagination_parameters() or self._declares_query_parameters():
            statuses.append(400)
        perms = {type(p) for p in self.view.get_permissions()}
        if permissions.AllowAny not in perms:
            statuses += [401, 403]
        if "{" in self.path or self._is_paginated_list():
            statuses.append(404)
        if has_body:
            statuses += [411, 415]
        return statuses

    def _declares_query_parameters(self) -> bool:
        """A query parameter the view declares itself (one, or a serializer of them) is validated:
        a value it cannot take is a 400 ``invalid``."""
        return any(
            not isinstance(p, OpenApiParameter) or p.location == OpenApiParameter.QUERY
            for p in self.get_override_parameters()
        )

    def get_filter_backends(self) -> list[Any]:
        """drf-spectacular documents filters on lists only; a GET on a collection that reads the
        same filters (the stats, the export) takes them too, and a client or fuzzer must see them."""
        if self.method == "GET" and "{" not in self.path and getattr(self.view, "filterset_class", None):
            return list(getattr(self.view, "filter_backends", []))
        return super().get_filter_backends()

    def _is_paginated_list(self) -> bool:
        """Pages past the end are 404s (DRF's NotFound); a bad cursor is a 400 (apps.core.pagination)."""
        return self._get_paginator() is not None and self._is_list_view()


class SessionScheme(authentication.SessionScheme):
    """The session cookie, as drf-spectacular describes DRF's session authentication."""

    target_class = "apps.core.csrf.SessionAuthentication"


def allow_empty_query_values(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: an empty query parameter (``?status=``) means "not given".

    That is how the browsable API's filter forms submit the fields left blank, and how the
    API has always read them; OpenAPI says so with ``allowEmptyValue``."""
    for operation in _operations(result):
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "query":
                parameter["allowEmptyValue"] = True
    return result


def _operations(result: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every operation of the schema (a path item may also hold non-operation entries)."""
    for operations in result.get("paths", {}).values():
        yield from (operation for operation in operations.values() if isinstance(operation, dict))


FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# What an empty form value becomes is decided per field, by DRF's ``Field.get_value``.  Only
# text fields say so in the schema: a form's booleans and numbers are text whatever the
# schema says ("0" is false), and a string alternative beside them would make a fuzzer
# call "0" invalid.  Lists and mappings are read from several form keys.
EMPTY_FORM_VALUE = {"type": "string", "maxLength": 0, "description": "Empty: not given (or null)."}


def allow_empty_form_values(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: in a form body, an optional or nullable field sent empty means
    "not given" (or null).

    That is what DRF does with HTML input, and how the browsable API's forms submit the
    fields left blank (a token's ``user`` left empty is the caller's own).  JSON bodies keep
    the strict schema: there ``"user": ""`` names a user that does not exist.  Each form body
    therefore gets its own component, ``<Name>Form``, where those fields also accept "".
    """
    components = result.get("components", {}).get("schemas", {})
    form_components: dict[str, str] = {}
    for operation in _operations(result):
        content = operation.get("requestBody", {}).get("content", {})
        for media_type in FORM_MEDIA_TYPES:
            name = content.get(media_type, {}).get("schema", {}).get("$ref", "").rpartition("/")[2]
            if name not in components:
                continue
            if name not in form_components:
                form_components[name] = _form_component(name, components)
            content[media_type]["schema"] = {"$ref": f"#/components/schemas/{form_components[name]}"}
    return result


def _form_component(name: str, components: dict[str, Any]) -> str:
    component = components[name]
    # A PATCH component requires nothing, but DRF still reads "" for the serializer's required
    # fields as a value (and refuses it where the JSON schema would): use the full component's list.
    base = components.get(name.removeprefix("Patched"), component)
    required = set(base.get("required", ()))
    properties = {}
    for field, schema in component.get("properties", {}).items():
        resolved = components.get(schema.get("$ref", "").rpartition("/")[2], schema)
        optional = field not in required or schema.get("nullable", False)
        if optional and resolved.get("type") == "string" and _refuses_empty_text(resolved):
            schema = {"anyOf": [schema, EMPTY_FORM_VALUE]}
        properties[field] = schema
    form_name = f"{name}Form"
    components[form_name] = {**component, "properties": properties}
    return form_name


def _refuses_empty_text(schema: dict[str, Any]) -> bool:
    return any(key in schema for key in ("minLength", "pattern", "format", "enum"))
