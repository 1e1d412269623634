"""API tokens: format, hashing, the model's rules and their authentication."""

import hashlib
import hmac
import io
import re
import time
import zlib
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework import exceptions

from apps.audit.models import AuditEvent
from apps.gateway import authentication, tokens
from apps.gateway.authentication import APITokenAuthentication, ManagementAPITokenAuthentication
from apps.gateway.cache import TTLCache
from apps.gateway.choices import TokenStatus
from apps.gateway.models import APIToken, Upstream
from apps.gateway.models.tokens import normalise_cidrs
from apps.gateway.scopes import SCOPES

FORMAT = re.compile(r"agt_[A-Za-z0-9]{12}_[A-Za-z0-9]{32}_[A-Za-z0-9]{6}")


@pytest.fixture
def make_token(db, make_user):
    """``make_token(user=None, **create_token options) -> (APIToken, plaintext)``."""

    def make(user=None, **options):
        values = {"label": "test", "expires_at": timezone.now() + timedelta(days=30), "all_upstreams": True}
        return tokens.create_token(user=user or make_user(), **{**values, **options})

    return make


def authenticate(plaintext, *, scheme="Token", ip="192.0.2.10", auth=APITokenAuthentication):
    request = RequestFactory().get("/gw/crm/x", HTTP_AUTHORIZATION=f"{scheme} {plaintext}", REMOTE_ADDR=ip)
    return auth().authenticate(request)


def refusal(plaintext, **kwargs) -> exceptions.APIException:
    with pytest.raises(exceptions.APIException) as caught:
        authenticate(plaintext, **kwargs)
    return caught.value


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch, settings):
    """The token cache on a clock the test moves by hand."""
    fake = FakeClock()
    monkeypatch.setattr(authentication, "token_cache", TTLCache(settings.POLICY_CACHE_SECONDS, clock=fake))
    return fake


# --- Format ------------------------------------------------------------------------------


def test_a_new_token_has_the_documented_format_and_parses_back():
    new = tokens.generate()
    assert FORMAT.fullmatch(new.plaintext)
    assert new.plaintext.startswith(f"agt_{new.key_id}_{new.secret}_")
    assert tokens.parse(new.plaintext) == (new.key_id, new.secret)


def test_the_checksum_is_the_base62_crc32_of_everything_before_it():
    new = tokens.generate()
    body, check = new.plaintext.rsplit("_", 1)
    value = 0
    for char in check:
        value = value * 62 + tokens.ALPHABET.index(char)
    assert value == zlib.crc32(body.encode())


def test_generated_tokens_do_not_repeat():
    generated = [tokens.generate() for _ in range(200)]
    assert len({new.key_id for new in generated}) == len({new.secret for new in generated}) == 200


def _mangled(plaintext: str) -> dict[str, str]:
    key_id, secret = plaintext[4:16], plaintext[17:49]
    flipped = "A" if plaintext[20] != "A" else "B"
    return {
        "wrong prefix": "agx" + plaintext[3:],
        "upper-case prefix": "AGT" + plaintext[3:],
        "short key id": plaintext[:4] + key_id[1:] + plaintext[16:],
        "long secret": plaintext[:17] + secret + "a" + plaintext[49:],
        "character outside the alphabet": plaintext[:20] + "-" + plaintext[21:],
        "one character mistyped": plaintext[:20] + flipped + plaintext[21:],
        "checksum changed": plaintext[:-1] + ("0" if plaintext[-1] != "0" else "1"),
        "truncated": plaintext[:-2],
        "trailing garbage": plaintext + "x",
        "old 40-hex DRF key": "0123456789abcdef0123456789abcdef01234567",
        "empty-looking": "agt___",
    }


def test_malformed_tokens_do_not_parse():
    new = tokens.generate()
    for case, text in _mangled(new.plaintext).items():
        assert tokens.parse(text) is None, case
    assert tokens.parse(None) is None


@pytest.mark.parametrize("case", list(_mangled(tokens.generate().plaintext)))
def test_it_rejects_a_mistyped_token_without_a_query(make_token, django_assert_num_queries, case):
    _, plaintext = make_token()
    with django_assert_num_queries(0):
        exc = refusal(_mangled(plaintext)[case])
    assert exc.get_codes() == "authentication_failed"


def test_the_secret_is_stored_only_as_its_peppered_hmac(make_token, settings):
    token, plaintext = make_token()
    secret = tokens.parse(plaintext).secret
    pepper = settings.TOKEN_PEPPERS[settings.TOKEN_PEPPER_ID]
    assert token.pepper_id == settings.TOKEN_PEPPER_ID
    assert token.secret_hash == hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()
    row = APIToken.objects.filter(pk=token.pk).values().get()
    assert not any(secret in str(value) for value in row.values())
    assert str(token) == f"test ({token.key_id})"


# --- Authentication: the header ------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Token", "token", "Bearer", "BEARER"])
def test_token_and_bearer_schemes_are_accepted_in_any_case(make_token, scheme):
    token, plaintext = make_token()
    user, auth = authenticate(plaintext, scheme=scheme)
    assert (user, auth.pk) == (token.user, token.pk)


def test_other_schemes_and_no_header_are_left_to_other_authenticators(make_token):
    _, plaintext = make_token()
    assert authenticate(plaintext, scheme="Basic") is None
    request = RequestFactory().post(f"/gw/crm/x?token={plaintext}", {"token": plaintext})
    assert APITokenAuthentication().authenticate(request) is None


@pytest.mark.parametrize("header", ["Token", "Token a b", "Bearer \xe9t\xe9"])
def test_a_malformed_header_is_refused(db, header):
    request = RequestFactory().get("/", HTTP_AUTHORIZATION=header)
    with pytest.raises(exceptions.AuthenticationFailed) as caught:
        APITokenAuthentication().authenticate(request)
    assert caught.value.get_codes() == "authentication_failed"


# --- Authentication: the token's state ------------------------------------------------------


def _wrong_secret(token, plaintext):
    new = tokens.generate()
    body = f"agt_{token.key_id}_{new.secret}"
    return f"{body}_{tokens.checksum(body)}"


def _unknown_key(token, plaintext):
    return tokens.generate().plaintext


def _update(**fields):
    def apply(token, plaintext):
        APIToken.objects.filter(pk=token.pk).update(**fields)
        return plaintext

    return apply


def _deactivate_user(token, plaintext):
    token.user.is_active = False
    token.user.save(update_fields=("is_active",))
    return plaintext


LIFECYCLE = {
    "usable": (lambda token, plaintext: plaintext, None),
    "wrong secret": (_wrong_secret, "authentication_failed"),
    "unknown key id": (_unknown_key, "authentication_failed"),
    "expired": (_update(expires_at=timezone.now() - timedelta(seconds=1)), "token_expired"),
    "revoked": (_update(revoked_at=timezone.now()), "token_revoked"),
    "revoked and expired": (
        _update(revoked_at=timezone.now(), expires_at=timezone.now() - timedelta(days=1)),
        "token_revoked",
    ),
    "disabled": (_update(enabled=False), "authentication_failed"),
    "inactive user": (_deactivate_user, "authentication_failed"),
}


@pytest.mark.parametrize("case", list(LIFECYCLE))
def test_the_token_lifecycle(make_token, case):
    prepare, code = LIFECYCLE[case]
    token, plaintext = make_token()
    presented = prepare(token, plaintext)
    if code is None:
        assert authenticate(presented)[1].pk == token.pk
    else:
        exc = refusal(presented)
        assert (exc.status_code, exc.get_codes()) == (401, code)


def test_wrong_secrets_and_unknown_keys_look_the_same_and_cost_the_same_work(make_token, monkeypatch):
    token, plaintext = make_token()
    hashed = []
    original = tokens.hash_secret
    monkeypatch.setattr(
        tokens, "hash_secret", lambda secret, pepper_id: hashed.append(1) or original(secret, pepper_id)
    )
    wrong, unknown = refusal(_wrong_secret(token, plaintext)), refusal(_unknown_key(token, plaintext))
    assert (wrong.get_codes(), str(wrong.detail)) == (unknown.get_codes(), str(unknown.detail))
    assert len(hashed) == 2  # one HMAC each, whether or not the key id exists


@pytest.mark.parametrize(
    ("offset", "status"),
    [
        (-timedelta(microseconds=1), TokenStatus.ACTIVE),
        (timedelta(0), TokenStatus.EXPIRED),
        (timedelta(microseconds=1), TokenStatus.EXPIRED),
    ],
    ids=["just before", "at", "after"],
)
def test_a_token_expires_at_its_expiry_instant(make_token, offset, status):
    token, _ = make_token()
    now = token.expires_at + offset
    assert token.status(now) == status
    assert token.is_usable(now) == (status == TokenStatus.ACTIVE)


def test_the_requests_token_and_user_are_private_copies(make_token):
    _, plaintext = make_token()
    first, second = authenticate(plaintext), authenticate(plaintext)
    assert first[1] is not second[1] and first[0] is not second[0]
    first[0].is_staff = True
    assert authenticate(plaintext)[0].is_staff is False


# --- Revocation reaches every process within POLICY_CACHE_SECONDS ------------------------


def test_a_revocation_elsewhere_takes_effect_within_the_cache_bound(make_token, clock, settings):
    token, plaintext = make_token()
    assert authenticate(plaintext)
    # Another process revokes it: this process's cache does not know yet...
    APIToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    clock.now += settings.POLICY_CACHE_SECONDS * 0.9
    assert authenticate(plaintext)
    # ...but its entry is never served longer than the bound.
    clock.now += settings.POLICY_CACHE_SECONDS * 0.1
    assert refusal(plaintext).get_codes() == "token_revoked"


def test_a_cached_token_costs_no_query(make_token, clock, django_assert_num_queries):
    _, plaintext = make_token()
    authenticate(plaintext)
    with django_assert_num_queries(0):
        authenticate(plaintext)


def test_a_revocation_takes_effect_within_a_second_in_real_time(make_token, settings):
    settings.POLICY_CACHE_SECONDS = 1.0
    token, plaintext = make_token()
    assert authenticate(plaintext)
    tokens.revoke_token(token)
    time.sleep(1.05)
    assert refusal(plaintext).get_codes() == "token_revoked"


def test_revoking_is_idempotent_and_audited_once(make_token):
    token, _ = make_token()
    assert tokens.revoke_token(token) is True
    revoked_at = APIToken.objects.get(pk=token.pk).revoked_at
    assert tokens.revoke_token(token) is False
    assert token.revoked_at == APIToken.objects.get(pk=token.pk).revoked_at == revoked_at
    assert AuditEvent.objects.filter(event_type="token.revoked", object_id=str(token.pk)).count() == 1


# --- Peppers ----------------------------------------------------------------------------


TWO_PEPPERS = {1: b"first-pepper-0123456789", 2: b"second-pepper-0123456789"}


def test_a_token_keeps_working_after_a_new_pepper_becomes_current(make_token, settings):
    settings.TOKEN_PEPPERS = TWO_PEPPERS
    settings.TOKEN_PEPPER_ID = 1
    old, plaintext = make_token()
    settings.TOKEN_PEPPER_ID = 2
    new, _ = make_token()
    assert (old.pepper_id, new.pepper_id) == (1, 2)
    assert authenticate(plaintext)[1].pk == old.pk


def test_a_token_whose_pepper_was_removed_no_longer_authenticates(make_token, settings):
    settings.TOKEN_PEPPERS = TWO_PEPPERS
    settings.TOKEN_PEPPER_ID = 1
    _, plaintext = make_token()
    settings.TOKEN_PEPPERS = {2: settings.TOKEN_PEPPERS[2]}
    settings.TOKEN_PEPPER_ID = 2
    assert refusal(plaintext).get_codes() == "authentication_failed"


# --- last_used --------------------------------------------------------------------------


def _updates(queries) -> list[str]:
    return [query["sql"] for query in queries if query["sql"].startswith("UPDATE")]


def test_the_first_use_is_recorded_with_one_narrow_update(make_token):
    token, plaintext = make_token()
    with CaptureQueriesContext(connection) as queries:
        authenticate(plaintext, ip="192.0.2.7")
    [update] = _updates(queries)
    assert "`last_used_at`" in update and "`secret_hash`" not in update and "`label`" not in update
    token.refresh_from_db()
    assert token.last_used_ip == "192.0.2.7"
    assert timezone.now() - token.last_used_at < timedelta(seconds=5)


def test_uses_within_the_interval_are_not_written_again(make_token):
    token, plaintext = make_token()
    authenticate(plaintext, ip="192.0.2.7")
    first_use = APIToken.objects.get(pk=token.pk).last_used_at
    authentication.token_cache.clear()  # as a fresh process would: the database decides
    with CaptureQueriesContext(connection) as queries:
        authenticate(plaintext, ip="192.0.2.8")
    assert _updates(queries) == []
    assert APIToken.objects.values_list("last_used_at", "last_used_ip").get(pk=token.pk) == (first_use, "192.0.2.7")


def test_a_use_after_the_interval_is_written(make_token, settings):
    token, plaintext = make_token()
    long_ago = timezone.now() - timedelta(seconds=settings.TOKEN_LAST_USED_INTERVAL + 1)
    APIToken.objects.filter(pk=token.pk).update(last_used_at=long_ago, last_used_ip="192.0.2.1")
    authenticate(plaintext, ip="192.0.2.9")
    token.refresh_from_db()
    assert token.last_used_at > long_ago and token.last_used_ip == "192.0.2.9"


def test_concurrent_processes_write_the_last_use_once(make_token, settings):
    token, _ = make_token()
    now, interval = timezone.now(), settings.TOKEN_LAST_USED_INTERVAL
    writes = [APIToken.objects.touch(token.pk, now=now, ip=None, interval_seconds=interval) for _ in range(3)]
    assert writes == [1, 0, 0]


# --- Source networks and scopes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("cidrs", "ip", "allowed"),
    [
        ([], "203.0.113.5", True),
        (["10.0.0.0/8"], "10.1.2.3", True),
        (["10.0.0.0/8"], "192.168.1.1", False),
        (["10.0.0.0/8", "2001:db8::/32"], "2001:db8::1", True),
        (["10.0.0.0/8"], "::ffff:10.0.0.1", True),
        (["192.0.2.7/32"], "192.0.2.7", True),
        (["10.0.0.0/8"], "", False),
        (["10.0.0.0/8"], None, False),
    ],
)
def test_source_networks(cidrs, ip, allowed):
    assert APIToken(allowed_cidrs=cidrs).allows_source(ip) is allowed


def test_a_token_used_from_outside_its_networks_is_refused_with_403(make_token):
    _, plaintext = make_token(allowed_cidrs=["10.0.0.0/8"])
    assert authenticate(plaintext, ip="10.9.9.9")
    exc = refusal(plaintext, ip="192.0.2.1")
    assert isinstance(exc, exceptions.PermissionDenied)
    assert (exc.status_code, exc.get_codes()) == (403, "source_ip_not_allowed")


def test_networks_are_normalised_and_invalid_ones_refused(make_user):
    assert normalise_cidrs(["10.1.2.3/8", " 10.0.0.0/8", "2001:DB8::1/32"]) == ["10.0.0.0/8", "2001:db8::/32"]
    for bad in (["10.0.0.0/33"], ["nonsense"], [42], ["10.0.0.0/8"] * 51):
        with pytest.raises(ValueError):
            normalise_cidrs(bad)
    with pytest.raises(ValidationError):
        tokens.create_token(
            user=make_user(), label="x", expires_at=timezone.now() + timedelta(days=1), allowed_cidrs=["1.2.3.4/99"]
        )


def test_upstream_scope(make_token, clock, django_assert_num_queries):
    crm, hr = (
        Upstream.objects.create(name="crm", base_url="http://crm"),
        Upstream.objects.create(name="hr", base_url="http://hr"),
    )
    _, scoped = make_token(all_upstreams=False, upstreams=[crm])
    everything, _ = make_token(all_upstreams=True)
    _, token = authenticate(scoped)
    with django_assert_num_queries(0):  # the cached row carries its upstreams
        assert token.allows_upstream(crm) and not token.allows_upstream(hr)
    assert everything.allows_upstream(hr)


def test_the_expiry_cannot_exceed_the_maximum_lifetime_outside_ensure_admin(make_user, settings):
    user = make_user()
    too_late = timezone.now() + timedelta(days=settings.TOKEN_MAX_LIFETIME_DAYS, minutes=1)
    with pytest.raises(ValidationError) as caught:
        tokens.create_token(user=user, label="x", expires_at=too_late)
    assert caught.value.code == "max_lifetime"
    token, _ = tokens.create_token(user=user, label="x", expires_at=too_late, max_lifetime_days=365)
    assert token.expires_at == too_late


# --- The management API's authenticator -------------------------------------------------


def test_the_management_api_needs_the_management_scope(make_token):
    token, plaintext = make_token(management_api=False)
    assert authenticate(plaintext)  # fine for the gateway
    exc = refusal(plaintext, auth=ManagementAPITokenAuthentication)
    assert (exc.status_code, exc.get_codes()) == (403, "token_scope")
    event = AuditEvent.objects.get(event_type="auth.failed")
    assert (event.reason, event.status, event.token_key_id) == ("token_scope", 403, token.key_id)


def test_each_refusal_is_audited_once_by_the_management_api_and_never_by_the_gateway_class(make_token):
    token, plaintext = make_token(management_api=True)
    APIToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    failures = AuditEvent.objects.filter(event_type="auth.failed")
    refusal(plaintext)
    assert not failures.exists()  # the gateway view records its own attempt
    refusal(plaintext, auth=ManagementAPITokenAuthentication)
    event = failures.get()
    assert (event.event_type, event.reason, event.decision, event.status) == (
        "auth.failed",
        "token_expired",
        "deny",
        401,
    )
    assert (event.token_key_id, event.source_ip) == (token.key_id, "192.0.2.10")


# --- Management scopes (issue 12, item 13) -----------------------------------------------


def test_new_tokens_have_no_management_scope_unless_asked(make_token):
    token, plaintext = make_token()
    assert token.scopes == [] and not token.uses_management_api
    assert authenticate(plaintext)  # the gateway only
    assert refusal(plaintext, auth=ManagementAPITokenAuthentication).get_codes() == "token_scope"


def test_a_write_scope_includes_its_read_scope_and_nothing_else(make_token):
    token, _ = make_token(scopes=["policy:write", "tokens:write"])
    assert [scope for scope in SCOPES if token.has_scope(scope)] == [
        "policy:read",
        "policy:write",
        "tokens:read",
        "tokens:write",
    ]
    reader, _ = make_token(scopes=["policy:read"])
    assert not reader.has_scope("policy:write")


def test_scopes_are_checked_and_normalised_on_creation(make_token):
    token, _ = make_token(scopes=("tokens:write", "audit:read", "tokens:write"))
    assert token.scopes == ["audit:read", "tokens:write"]
    for bad in (["admin"], ["audit:read", "read_api"], "audit:read"):
        with pytest.raises(ValidationError) as caught:
            make_token(scopes=bad)
        assert "scopes" in caught.value.message_dict


def test_the_upstream_limit_is_read_from_the_cached_row(make_token, django_assert_num_queries):
    crm = Upstream.objects.create(name="crm", base_url="http://crm")
    _, scoped = make_token(all_upstreams=False, upstreams=[crm], scopes=["audit:read"])
    everything, _ = make_token(all_upstreams=True)
    _, token = authenticate(scoped)
    with django_assert_num_queries(0):
        assert token.upstream_ids() == frozenset({crm.pk})
    assert everything.upstream_ids() is None


def create_token_command(*args: str) -> tuple[APIToken, str]:
    out = io.StringIO()
    call_command("create_token", *args, "--label", "cli", stdout=out, stderr=io.StringIO())
    plaintext = out.getvalue().strip()
    return tokens.find_token(plaintext), plaintext


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], []),
        (["--scope", "audit:read"], ["audit:read"]),
        (["--scope", "tokens:write", "--scope", "audit:read"], ["audit:read", "tokens:write"]),
        (["--management-api"], list(SCOPES)),  # the former flag, for old scripts
    ],
)
def test_create_token_gives_only_the_scopes_asked_for(make_user, options, expected):
    user = make_user()
    token, _ = create_token_command(user.username, *options)
    assert token.scopes == expected


def test_create_token_refuses_an_unknown_scope(make_user):
    with pytest.raises(CommandError):
        call_command("create_token", make_user().username, "--label", "x", "--scope", "admin", stderr=io.StringIO())


def test_create_token_records_the_user_it_creates_and_the_token_as_the_command(db):
    token, _ = create_token_command("svc-report", "--create-user")
    user = token.user
    assert (user.username, user.has_usable_password()) == ("svc-report", False)
    user_created = AuditEvent.objects.get(event_type="user.created", object_id=str(user.pk))
    token_created = AuditEvent.objects.get(event_type="token.created", object_id=str(token.pk))
    assert user_created.changes["username"] == [None, "svc-report"]
    for event in (user_created, token_created):
        assert (event.actor_id, event.source_ip, event.auth_method) == (None, None, "command")
        assert event.user_agent == "manage.py create_token" and event.request_id.startswith("cmd-")
    assert user_created.request_id == token_created.request_id


def test_create_token_keeps_no_user_and_no_token_when_an_event_cannot_be_written(db, monkeypatch):
    from django.contrib.auth.models import User
    from django.db import DatabaseError

    from apps.audit import events

    calls, record = [], events.record

    def fail_the_second(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise DatabaseError("the audit insert failed")
        return record(*args, **kwargs)

    monkeypatch.setattr(events, "record", fail_the_second)
    with pytest.raises(DatabaseError):
        create_token_command("svc-lost", "--create-user")
    assert calls == ["user.created", "token.created"]
    assert not User.objects.filter(username="svc-lost").exists()
    assert not APIToken.objects.exists() and not AuditEvent.objects.exists()


def test_create_token_keeps_no_user_created_for_a_token_it_refuses(db):
    from django.contrib.auth.models import User

    with pytest.raises(CommandError):
        call_command("create_token", "svc-refused", "--create-user", "--label", "x", "--days", "0",
                     stderr=io.StringIO())  # fmt: skip
    assert not User.objects.filter(username="svc-refused").exists() and not AuditEvent.objects.exists()


def test_ensure_admin_replaces_a_deploy_token_that_lacks_a_scope(make_user, tmp_path):
    admin = make_user("admin", staff=True)
    _, old = make_token_for(admin, scopes=["audit:read", "policy:write"], all_upstreams=True)
    (tmp_path / "admin-token").write_text(old + "\n")
    files = {"token_file": tmp_path / "admin-token", "password_file": tmp_path / "admin-password"}
    call_command("ensure_admin", **files, stdout=io.StringIO())
    token = tokens.find_token((tmp_path / "admin-token").read_text().strip())
    assert (token.user, token.all_upstreams, token.scopes) == (admin, True, list(SCOPES))


def make_token_for(user, **options) -> tuple[APIToken, str]:
    return tokens.create_token(user=user, label="old", expires_at=timezone.now() + timedelta(days=300),
                               max_lifetime_days=365, **options)  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_former_management_tokens_every_scope_and_others_none():
    from django.db.migrations.executor import MigrationExecutor

    before, after = (
        [("gateway", "0002_upstream_deadline_rewrite_headers_rule_case")],
        [("gateway", "0003_apitoken_scopes")],
    )
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_apps = executor.loader.project_state(before).apps
        user = old_apps.get_model("auth", "User").objects.create(username="upgrader")
        old_token = old_apps.get_model("gateway", "APIToken")
        common = {"user_id": user.pk, "label": "old", "expires_at": timezone.now() + timedelta(days=1), "pepper_id": 1}
        admin = old_token.objects.create(key_id="A" * 12, secret_hash="0" * 64, management_api=True, **common)
        gateway_only = old_token.objects.create(key_id="B" * 12, secret_hash="0" * 64, management_api=False, **common)
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new_token = executor.loader.project_state(after).apps.get_model("gateway", "APIToken")
        assert new_token.objects.get(pk=admin.pk).scopes == list(SCOPES)
        assert new_token.objects.get(pk=gateway_only.pk).scopes == []
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_previous_release_still_writes_and_reads_tokens_during_a_deploy(make_user):
    """Until its processes restart, the previous release inserts tokens without ``scopes``
    and reads ``management_api``: both columns have database defaults (fail closed)."""
    user, now = make_user(), timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO gateway_apitoken (key_id, secret_hash, pepper_id, user_id, label, created_at, expires_at,"
            " enabled, all_upstreams, allowed_cidrs, management_api) VALUES"
            " (%s, %s, 1, %s, 'old release', %s, %s, 1, 1, '[]', 0)",
            ["C" * 12, "0" * 64, user.pk, now, now + timedelta(days=1)],
        )
        cursor.execute(
            "INSERT INTO gateway_apitoken (key_id, secret_hash, pepper_id, user_id, label, created_at, expires_at,"
            " enabled, all_upstreams, allowed_cidrs) VALUES (%s, %s, 1, %s, 'new release', %s, %s, 1, 1, '[]')",
            ["D" * 12, "0" * 64, user.pk, now, now + timedelta(days=1)],
        )
        cursor.execute("SELECT management_api FROM gateway_apitoken WHERE key_id = %s", ["D" * 12])
        assert cursor.fetchone() == (0,)
    assert APIToken.objects.get(key_id="C" * 12).scopes == []
