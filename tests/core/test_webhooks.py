"""The webhook signature a receiver checks (apps.core.webhooks)."""

from apps.core import webhooks

SECRET = b"receiver-shared-secret"


def test_a_receiver_accepts_the_signature_it_recomputes():
    header = webhooks.signature(SECRET, 1_700_000_000, b'{"a":1}\n')
    assert webhooks.verify(SECRET, header, b'{"a":1}\n', now=1_700_000_010)


def test_a_changed_body_another_secret_or_an_old_signature_is_rejected():
    header = webhooks.signature(SECRET, 1_700_000_000, b'{"a":1}\n')
    assert not webhooks.verify(SECRET, header, b'{"a":2}\n', now=1_700_000_010)
    assert not webhooks.verify(b"another secret", header, b'{"a":1}\n', now=1_700_000_010)
    assert not webhooks.verify(SECRET, header, b'{"a":1}\n', now=1_700_000_000 + 301)


def test_a_malformed_header_is_rejected_not_raised():
    for header in ("", "t=abc,v1=00", "v1=00", "t=1", "garbage"):
        assert not webhooks.verify(SECRET, header, b"", now=1)


def test_the_hook_never_shows_its_secret():
    assert "receiver-shared-secret" not in repr(webhooks.Webhook("https://siem.example/in", SECRET))
