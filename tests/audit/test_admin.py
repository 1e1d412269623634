"""The Django admin of the audit trail (``apps.audit.admin``): read-only, filtered without scanning the table."""

import pytest

from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(client, admin_user):
    client.force_login(admin_user)
    return client


def test_audit_events_cannot_be_deleted_in_the_admin(browser, make_event):
    event = make_event()
    assert browser.get(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_the_audit_list_filters_and_searches_without_scanning_or_counting_the_table(browser, make_event):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_event(request_id="find-me", reason="no_matching_rule", decision="deny", status=403)
    make_event(request_id="other")
    url = "/admin/audit/auditevent/?reason=no_matching_rule&decision__exact=deny&q=find-me"
    with CaptureQueriesContext(connection) as queries:
        response = browser.get(url)
    assert response.status_code == 200
    assert b"find-me" in response.content and b">other<" not in response.content
    audit_sql = [q["sql"] for q in queries if "audit_auditevent" in q["sql"]]
    assert not [sql for sql in audit_sql if "DISTINCT" in sql.upper()]
    assert not [sql for sql in audit_sql if "LIKE '%" in sql or "LIKE %" in sql]  # no leading wildcard
    counts = [sql for sql in audit_sql if "COUNT(" in sql.upper()]
    assert counts and all("LIMIT 10001" in sql for sql in counts)


def test_the_audit_list_offers_the_reason_codes_as_filters(browser):
    response = browser.get("/admin/audit/auditevent/")
    assert b"?reason=token_expired" in response.content
    assert b"?event_type=gateway.denied" in response.content
