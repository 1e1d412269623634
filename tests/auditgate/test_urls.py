"""The site's routes: the root and the browsable API (``auditgate.urls``)."""

import pytest

pytestmark = pytest.mark.django_db


def test_the_browsable_api_renders_html_for_a_logged_in_user(client, make_user):
    user = make_user("dave")
    client.force_login(user)
    response = client.get("/api/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Api Root" in response.content
    assert b"/static/rest_framework/css/bootstrap.min.css" in response.content


def test_the_root_redirects_to_the_api(client):
    response = client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/api/")


@pytest.mark.parametrize("page", ["/api/schema/swagger-ui/", "/api/schema/redoc/"])
def test_the_documentation_pages_answer_get_only(client, page):
    assert client.get(page).status_code == 200
    response = client.options(page)
    assert response.status_code == 405  # was a 500: DRF's metadata rendered as the page's template
    assert "OPTIONS" not in response["Allow"]
