"""Settings for the test suite: the deployed settings plus the test database user.

``make deploy`` writes ``/etc/auditgate/test.env`` (root only) with a MariaDB user
that may create the ``test_auditgate`` database; the app's own user may not.
"""

import os

os.environ.setdefault("AUDITGATE_ENV_FILE", "/etc/auditgate/auditgate.env:/etc/auditgate/test.env")

from auditgate.settings import *  # noqa: F403

# Fast hashing for the many users the tests create; production keeps Django's default.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Several checkouts (or people) testing against one MariaDB at once each name their own test
# database; the test account must be granted it (the deploy grants test_auditgate only).
if os.environ.get("AUDITGATE_TEST_DB_NAME"):
    DATABASES["default"]["TEST"]["NAME"] = os.environ["AUDITGATE_TEST_DB_NAME"]  # noqa: F405
