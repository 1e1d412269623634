"""Settings for the test suite: the deployed settings plus the test database user.

``make deploy`` writes ``/etc/auditgate/test.env`` (root only) with a MariaDB user
that may create the ``test_auditgate`` database; the app's own user may not.
"""

import os
import tempfile

os.environ.setdefault("AUDITGATE_ENV_FILE", "/etc/auditgate/auditgate.env:/etc/auditgate/test.env")
# A key ring of the tests' own (the deployed one stays unused): two keys, the test key current, so that
# tests can drop or add a key (tests/core/test_secrets_at_rest.py).
os.environ.setdefault(
    "AUDITGATE_SECRETS_KEYS",
    "2:dGVzdC1vbmx5LXNlY3JldHMta2V5LW5ldmVyLXVzZSE=,1:ZGV2LW9ubHktc2VjcmV0cy1rZXktbmV2ZXItdXNlISE=",
)

from auditgate.settings import *  # noqa: F403

# Each test run spools outcomes in its own directory, drained in the request's thread: the
# test's transaction is invisible to a drainer's connection (tests/audit/test_spool.py runs
# the drainer thread in transactional tests).
AUDIT_SPOOL_DIR = tempfile.mkdtemp(prefix="auditgate-test-spool-")
AUDIT_SPOOL_DRAIN = "inline"

# Fast hashing for the many users the tests create; production keeps Django's default.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Several checkouts (or people) testing against one MariaDB at once each name their own test
# database; the test account must be granted it (the deploy grants test_auditgate only).
if os.environ.get("AUDITGATE_TEST_DB_NAME"):
    DATABASES["default"]["TEST"]["NAME"] = os.environ["AUDITGATE_TEST_DB_NAME"]  # noqa: F405

# A replica configured in the env files is the test database itself, never one of its own:
# the router's tests fake its health (tests/core/test_replica.py).
if "replica" in DATABASES:  # noqa: F405
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}  # noqa: F405
