"""The OpenAPI schema tells the truth about form bodies (``apps.core.openapi``)."""

import pytest
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator

from apps.core.openapi import EMPTY_FORM_VALUE
from apps.gateway.models import AccessRule, Upstream

pytestmark = pytest.mark.django_db

FORM = "multipart/form-data"


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def body_schema(schema, path: str, method: str, media_type: str) -> dict:
    ref = schema["paths"][path][method]["requestBody"]["content"][media_type]["schema"]["$ref"]
    return schema["components"]["schemas"][ref.rpartition("/")[2]]


def is_text(schema: dict, field_schema: dict) -> bool:
    alternatives = field_schema.get("anyOf", [field_schema])
    for alternative in alternatives:
        ref = alternative.get("$ref", "").rpartition("/")[2]
        if schema["components"]["schemas"].get(ref, alternative).get("type") != "string":
            return False
    return True


def accepts_empty(field_schema: dict) -> bool:
    return EMPTY_FORM_VALUE in field_schema.get("anyOf", ()) or (
        field_schema.get("type") == "string"
        and "minLength" not in field_schema
        and "format" not in field_schema
        and "pattern" not in field_schema
        and "enum" not in field_schema
        and "$ref" not in field_schema
    )


def test_the_schema_is_valid_openapi_and_generates_without_warnings(tmp_path):
    """A warning is a description that was dropped or guessed (e.g. one for an operation
    the view does not have)."""
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


def test_an_empty_user_in_a_token_form_is_the_caller_and_in_json_is_refused(schema, client_for, admin_user):
    assert accepts_empty(body_schema(schema, "/api/tokens/", "post", FORM)["properties"]["user"])
    assert not accepts_empty(body_schema(schema, "/api/tokens/", "post", "application/json")["properties"]["user"])

    api = client_for(admin_user)
    response = api.post("/api/tokens/", {"label": "from the form", "user": ""}, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["user"] == admin_user.username

    response = api.post("/api/tokens/", {"label": "from json", "user": ""}, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["user"]


def existing(kind: str) -> str:
    upstream = Upstream.objects.create(name="crm", base_url="http://127.0.0.1:1", internal=True)
    if kind == "upstreams":
        return str(upstream.pk)
    return str(AccessRule.objects.create(upstream=upstream, subject="any", path_pattern="/").pk)


@pytest.mark.parametrize(
    "method, path",
    [
        ("post", "/api/tokens/"),
        ("post", "/api/upstreams/"),
        ("post", "/api/rules/"),
        ("post", "/api/policy/check"),
        ("patch", "/api/upstreams/{id}/"),  # a partial update reads "" for a required field as a value
        ("patch", "/api/rules/{id}/"),
    ],
)
def test_the_form_schema_says_which_fields_may_be_sent_empty(schema, client_for, admin_user, method, path):
    """Each field alone, sent empty in a form: refused exactly where the form schema says so."""
    api = client_for(admin_user)
    properties = body_schema(schema, path, method, FORM)["properties"]
    url = path.replace("{id}", existing(path.split("/")[2])) if "{id}" in path else path
    for field, field_schema in properties.items():
        if not is_text(schema, field_schema):
            continue  # booleans and numbers are text in a form; the schema says nothing more
        response = getattr(api, method)(url, {field: ""}, format="multipart")
        assert response.status_code in (200, 201, 400), (field, response.status_code)
        refused = response.status_code == 400 and field in response.json()["errors"]
        assert refused != accepts_empty(field_schema), (path, field, response.json())


def test_an_operation_that_validates_its_own_query_parameters_documents_the_400(schema):
    verify = schema["paths"]["/api/audit/verify"]["get"]
    assert {p["name"] for p in verify["parameters"]} >= {"from_seq", "max_events"}
    assert "400" in verify["responses"]
    # A path parameter alone (the evidence body's direction) is a 404 when wrong, not a 400.
    body = schema["paths"]["/api/audit/events/{id}/evidence/{direction}/"]["get"]
    assert "400" not in body["responses"]
