"""auditgate's settings, plus django-revproxy (it reads ``settings.REVPROXY``) and the bench URLs."""

from auditgate.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "revproxy"]  # noqa: F405
ROOT_URLCONF = "benchsite.urls"
