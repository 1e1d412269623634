"""The site's error answers are JSON with a code (``apps.core.errors``)."""

import pytest

pytestmark = pytest.mark.django_db


def test_unknown_urls_get_a_json_404(client):
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
