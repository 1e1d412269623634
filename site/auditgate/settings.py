"""Settings for auditgate: one module, every deployment value read through ``env``.

On a deployed host Ansible writes ``/etc/auditgate/auditgate.env``; the path (or
a colon-separated list of files, later ones winning) can be changed with
``AUDITGATE_ENV_FILE``.  Only ``AUDITGATE_DEV=true`` enables the development
defaults (a throw-away SECRET_KEY); nothing secret has a default otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from auditgate.env import Env, audit_seal_keys, replica_database, secrets_keys, token_peppers

SITE_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = SITE_DIR.parent

env = Env([Path(p) for p in os.environ.get("AUDITGATE_ENV_FILE", "/etc/auditgate/auditgate.env").split(":") if p])

DEV_MODE = env.bool("AUDITGATE_DEV", False)
DEBUG = env.bool("AUDITGATE_DEBUG", False)
if DEV_MODE:
    SECRET_KEY = env.str("AUDITGATE_SECRET_KEY", "dev-only-insecure-key-never-deploy-this")
else:
    SECRET_KEY = env.secret("AUDITGATE_SECRET_KEY")
ALLOWED_HOSTS = env.list("AUDITGATE_ALLOWED_HOSTS", ["localhost", "127.0.0.1"] if DEV_MODE else None)
if not ALLOWED_HOSTS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("Set AUDITGATE_ALLOWED_HOSTS (comma-separated host names).")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    # Swagger UI and Redoc as static files of the site: deployed hosts may have no internet.
    "drf_spectacular_sidecar",
    "apps.core",
    "apps.gateway",
    "apps.audit",
    "apps.siem",
    "apps.alerts",
]

MIDDLEWARE = [
    # First, so that every response (errors included) carries its request id.
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.DatabaseUnavailableMiddleware",
    "apps.core.middleware.ChunkedBodyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# The gateway's own chain (apps.core.handlers): token-only and CSRF-exempt, it needs no
# sessions, CSRF, cookie authentication or messages, and refuses database outages and
# chunked bodies itself, audited.  The response headers of the host stay the same.
GATEWAY_MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "auditgate.urls"
WSGI_APPLICATION = "auditgate.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The site's own templates: the browsable API's page (links to the docs and the dashboard).
        "DIRS": [SITE_DIR / "auditgate" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES: dict[str, dict[str, Any]] = {
    "default": {
        # Django's MySQL backend, pinging a connection only after it was idle (apps.core.mariadb).
        "ENGINE": "apps.core.mariadb",
        "NAME": env.str("AUDITGATE_DB_NAME", "auditgate"),
        "USER": env.str("AUDITGATE_DB_USER", "auditgate"),
        "PASSWORD": env.secret("AUDITGATE_DB_PASSWORD") if not DEV_MODE else env.str("AUDITGATE_DB_PASSWORD", ""),
        # "localhost" makes mysqlclient use the unix socket.
        "HOST": env.str("AUDITGATE_DB_HOST", "localhost"),
        "PORT": env.str("AUDITGATE_DB_PORT", "3306"),
        # Persistent connections (one per daemon thread): +27..47% req/s measured in the lab.
        "CONN_MAX_AGE": env.int("AUDITGATE_CONN_MAX_AGE", 60),
        # Survive a database restart without a burst of errors (pinged when idle: apps.core.mariadb).
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            "charset": "utf8mb4",
            "init_command": "SET sql_mode='STRICT_TRANS_TABLES,NO_ZERO_DATE,NO_ENGINE_SUBSTITUTION'",
        },
        "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
    }
}
# An asynchronous replica of the primary (AUDITGATE_DB_REPLICA_HOST/_PORT): the audit trail's
# list, detail, export and stats read from it while it is healthy (apps.core.replica); every
# write, and every other read, stays on the primary.  Unset: one database, no router.
_replica = replica_database(env, DATABASES["default"])
if _replica is not None:
    DATABASES["replica"] = _replica
    DATABASE_ROUTERS = ["apps.core.replica.ReplicaRouter"]
# A replica further behind than this (or not replicating) is not read from.
AUDIT_REPLICA_MAX_LAG_SECONDS = env.int("AUDITGATE_DB_REPLICA_MAX_LAG_SECONDS", 30)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = env.str("AUDITGATE_STATIC_ROOT", str(REPO_DIR / ".build" / "static"))

# HTTPS: Apache terminates TLS (mod_ssl sets wsgi.url_scheme=https), so Django only
# has to mark its cookies secure; HSTS is sent by Apache on the :443 vhost.
HTTPS = env.bool("AUDITGATE_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
CSRF_TRUSTED_ORIGINS = [f"{'https' if HTTPS else 'http'}://{host}" for host in ALLOWED_HOSTS]
# Under /api/ (and for JSON clients) a CSRF refusal is JSON 403 csrf_failed, not Django's HTML page.
CSRF_FAILURE_VIEW = "apps.core.csrf.csrf_failure"
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGIN_URL = "rest_framework:login"
LOGIN_REDIRECT_URL = "api-root"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # API tokens; on /api/ only tokens with the management scope (the gateway uses the base class).
        "apps.gateway.authentication.ManagementAPITokenAuthentication",
        # DRF's, with CSRF refusals as 403 csrf_failed (apps.core.csrf).
        "apps.core.csrf.SessionAuthentication",
    ],
    # JSON nested too deep is 400 parse_error, not a RecursionError (apps.core.parsers).
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "apps.core.openapi.AutoSchema",
    # Browsable API forms: no dropdown lists more than this many objects (names of users and
    # upstreams are typed into text inputs anyway; see NAME_INPUT in the serializers).
    "HTML_SELECT_CUTOFF": 100,
    "HTML_SELECT_CUTOFF_TEXT": "More than {count} items: use the Raw data form",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "auditgate",
    "DESCRIPTION": (
        "An HTTP access gateway with a tamper-evident audit trail. Authenticate with an API token "
        "(`Authorization: Bearer agt_...`) that has the management scope, or log in at /api/auth/login/. "
        'Every error is JSON: `{"code", "detail", "request_id"}` with a stable `code`. '
        "The gateway itself (`/gw/<upstream>/<path>`) forwards any request and is described in the README."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Write-only secrets appear in request bodies only, read-only fields in responses only.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.core.openapi.allow_empty_query_values",
        "apps.core.openapi.allow_empty_form_values",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": False, "displayRequestDuration": True},
    # Choice sets used by several fields get one name each.
    "ENUM_NAME_OVERRIDES": {
        "HttpMethodEnum": "apps.gateway.choices.HTTP_METHODS",
        "DecisionEnum": "apps.audit.choices.Decision",
    },
}

# --- API tokens -------------------------------------------------------------------------
# Only HMAC-SHA256(pepper, secret) is stored. Peppers are deployment secrets, never in the
# database: "1:<secret>,2:<secret>". Each token keeps the id of its pepper, so a new pepper
# can be added and made current while older tokens keep working until they expire.
TOKEN_PEPPERS, TOKEN_PEPPER_ID = token_peppers(env, "1:dev-only-pepper-never-deploy" if DEV_MODE else None)
TOKEN_MAX_LIFETIME_DAYS = env.int("AUDITGATE_TOKEN_MAX_LIFETIME_DAYS", 90)
# How stale a process's view of tokens and rules may be: a revocation or a rule change
# takes effect everywhere within this many seconds (documented bound, tested).
POLICY_CACHE_SECONDS = 1.0
# last_used_at / last_used_ip are written at most once per this many seconds per token.
TOKEN_LAST_USED_INTERVAL = 60

# --- Secrets at rest --------------------------------------------------------------------
# Upstream credentials and identity keys are stored as Fernet tokens (apps.core.secrets_at_rest)
# under a key ring of their own, never derived from SECRET_KEY: "2:<fernet key>,1:<fernet key>",
# AUDITGATE_SECRETS_KEY_ID the current key (default: the highest id). Every key decrypts; after a
# new key is made current, `manage.py rekey` re-encrypts every secret under it and the old key
# can go. The web daemons decrypt, so the ring sits with SECRET_KEY and the token peppers in
# auditgate.env (0640 root:auditgate): a root-only file would be one the daemons cannot read.
SECRETS_KEYS, SECRETS_KEY_ID = secrets_keys(env, "1:ZGV2LW9ubHktc2VjcmV0cy1rZXktbmV2ZXItdXNlISE=" if DEV_MODE else None)

# --- Audit trail -------------------------------------------------------------------------
# The sealer (manage.py audit_seal, run by cron) chains events into signed checkpoints.
# It only seals events written longer ago than this, so that an event with a lower id
# that commits late is never skipped (keep it above the longest audit insert).
AUDIT_SEAL_GRACE_SECONDS = env.int("AUDITGATE_AUDIT_SEAL_GRACE_SECONDS", 60)
# No gateway exchange lasts longer (total_timeout <= 170 s, + connect 5 s, + the last write to a
# slow client, socket-timeout 45 s): an attempt open longer is stuck, and audit_reconcile
# closes it as interrupted, so that it holds the trail's sealing back for 5 minutes at most.
AUDIT_OPEN_ATTEMPT_BOUND_SECONDS = 300
# A WebSocket through /gw/ stays open up to its upstream's websocket_max_duration, 4 hours
# at most (apps.gateway.models.upstreams.MAX_WEBSOCKET_DURATION): its attempt is closed as
# interrupted only past that cap plus 5 minutes (or at once when its relay process died).
AUDIT_OPEN_WEBSOCKET_BOUND_SECONDS = 4 * 3600 + 300
# Where each gateway process spools its attempts' outcomes until a drainer thread commits them
# (apps.audit.spool): written by the daemons' user, read by audit_reconcile.  A persistent
# directory (not tmpfs): a spool must outlive the process that wrote it.  "thread" drains in
# the background; "inline" drains in the request's thread (the test suite, whose database
# changes are invisible to other connections until the test ends).
AUDIT_SPOOL_DIR = env.str("AUDITGATE_AUDIT_SPOOL_DIR", "/srv/auditgate/spool")
AUDIT_SPOOL_DRAIN = env.str("AUDITGATE_AUDIT_SPOOL_DRAIN", "thread")
# How long the drainer waits after the first outcome before it commits, so that the outcomes
# of the requests around it share the transaction (docs/benchmarks.md): the bound on how much
# later than the response an outcome is visible in MariaDB, the database being up.
AUDIT_SPOOL_LINGER_SECONDS = env.int("AUDITGATE_AUDIT_SPOOL_LINGER_MS", 20) / 1000
# The attempts that threads of one process insert at the same moment share one statement and
# one commit (apps.audit.group_commit); off only to measure what it buys (docs/benchmarks.md).
AUDIT_GROUP_COMMIT = env.bool("AUDITGATE_AUDIT_GROUP_COMMIT", True)
# The HMAC keys that sign checkpoints, by id: "1:<secret>,2:<secret>". Each checkpoint keeps
# the id of its key, so a new key can be added and made current while the older checkpoints
# still verify. Only the sealer and `audit_verify` need them: the deploy keeps them in a
# root-only file, out of the web daemons' reach.
AUDIT_SEAL_KEYS, AUDIT_SEAL_KEY_ID = audit_seal_keys(env)
# Every checkpoint is also appended here (one JSON line each): ship it off the box. The
# deploy sets it (seal.env); empty means no file (development, tests, benchmarks).
AUDIT_CHECKPOINT_FILE = env.str("AUDITGATE_AUDIT_CHECKPOINT_FILE", "")

# --- SIEM streaming (apps.siem) ------------------------------------------------------------
# `manage.py audit_stream --sink syslog|webhook` (cron, every minute, as root) sends every audit
# event once complete, and every signed checkpoint, to a syslog receiver (RFC 5424 over TLS,
# octet-counted) and/or an HTTPS webhook (signed NDJSON batches), at least once, from a durable
# cursor per sink.  Only the streamer reads these: the deploy keeps them, the webhook secret
# with them, in the root-only siem.env, out of the web daemons' reach.  Empty URL: sink off.
SIEM_SYSLOG_URL = env.str("AUDITGATE_SIEM_SYSLOG_URL", "")  # tls://host:port
SIEM_SYSLOG_CA_FILE = env.str("AUDITGATE_SIEM_SYSLOG_CA_FILE", "")  # the receiver's CA (PEM); empty: the system's
SIEM_SYSLOG_CLIENT_CERT = env.str("AUDITGATE_SIEM_SYSLOG_CLIENT_CERT", "")  # optional client certificate (PEM)
SIEM_SYSLOG_CLIENT_KEY = env.str("AUDITGATE_SIEM_SYSLOG_CLIENT_KEY", "")
SIEM_SYSLOG_FACILITY = env.str("AUDITGATE_SIEM_SYSLOG_FACILITY", "authpriv")
SIEM_WEBHOOK_URL = env.str("AUDITGATE_SIEM_WEBHOOK_URL", "")  # https://...
SIEM_WEBHOOK_CA_FILE = env.str("AUDITGATE_SIEM_WEBHOOK_CA_FILE", "")
SIEM_WEBHOOK_SECRET = env.secret("AUDITGATE_SIEM_WEBHOOK_SECRET") if SIEM_WEBHOOK_URL else ""
# A missing id counts as a rolled-back insert once a later row was recorded this long ago
# (the sealer's reasoning, apps.siem.cursor; keep it above the longest audit insert).
SIEM_GRACE_SECONDS = env.int("AUDITGATE_SIEM_GRACE_SECONDS", 5)
SIEM_BATCH_LINES = env.int("AUDITGATE_SIEM_BATCH_LINES", 500)
SIEM_BATCH_BYTES = env.int("AUDITGATE_SIEM_BATCH_BYTES", 1024 * 1024)

# Alerts (apps.alerts)
# audit_alerts (cron, as root) posts each alert, signed, to this https:// URL; empty: alerts are
# only listed (API, dashboard).  The signing secret is read from a root-only file by that
# command alone (the web daemons never need it, so they are never given it).
ALERTS_WEBHOOK_URL = env.str("AUDITGATE_ALERTS_WEBHOOK_URL", "")
ALERTS_WEBHOOK_CA_FILE = env.str("AUDITGATE_ALERTS_WEBHOOK_CA_FILE", "")
ALERTS_WEBHOOK_SECRET_FILE = env.str("AUDITGATE_ALERTS_WEBHOOK_SECRET_FILE", "")
if ALERTS_WEBHOOK_URL and not (ALERTS_WEBHOOK_URL.startswith("https://") and ALERTS_WEBHOOK_SECRET_FILE):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "AUDITGATE_ALERTS_WEBHOOK_URL: an https:// URL, with AUDITGATE_ALERTS_WEBHOOK_SECRET_FILE."
    )

# --- Gateway -----------------------------------------------------------------------------
GATEWAY_STREAM_CHUNK_BYTES = 64 * 1024
# Names this gateway in the Via header it adds; loop detection counts it on the way in.
GATEWAY_ID = env.str("AUDITGATE_GATEWAY_ID", "auditgate")
# A request that already passed this gateway more often than this gets 508 Loop Detected, and
# a service chain deeper than this many nested calls 508 too_many_hops.  apache/vhost.conf has a
# daemon group for hop levels 0, 1 and 2 only (apps.gateway.tracing): at most 2.
GATEWAY_MAX_HOPS = env.int("AUDITGATE_GATEWAY_MAX_HOPS", 2)
if not 0 <= GATEWAY_MAX_HOPS <= 2:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("AUDITGATE_GATEWAY_MAX_HOPS must be 0, 1 or 2: one daemon group per hop level.")
# How long an X-Auditgate-Identity assertion stays active for POST /api/introspect (seconds).
GATEWAY_IDENTITY_MAX_AGE = 60
# The WebSocket relay (apps.gateway.wsrelay) listens on this unix socket; Apache proxies
# "Upgrade: websocket" requests under /gw/ to it (apache/vhost.conf, "WebSockets").
WEBSOCKET_RELAY_SOCKET = env.str("AUDITGATE_WEBSOCKET_RELAY_SOCKET", "/srv/auditgate/run/wsrelay.sock")
# Largest WebSocket message relayed either way (bytes); a larger one closes the connection
# with 1009 (message too big).
WEBSOCKET_MAX_MESSAGE_BYTES = env.int("AUDITGATE_WEBSOCKET_MAX_MESSAGE_BYTES", 1024 * 1024)
# Peers whose X-Forwarded-For is believed (CIDRs, e.g. a load balancer in front of Apache).
TRUSTED_PROXIES = env.list("AUDITGATE_TRUSTED_PROXIES", [])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # mod_wsgi sends a daemon's stderr to the vhost's error log.
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": env.str("AUDITGATE_LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"level": "WARNING", "propagate": True},
        # The WebSocket library logs every connection's open and close at INFO: the audit
        # trail has each connection already (apps.gateway.wsrelay).
        "websockets": {"level": "WARNING", "propagate": True},
    },
}
