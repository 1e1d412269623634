from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What both apps and the site use: errors and their codes, strict fields and filters,
    OpenAPI helpers, the MariaDB backend, the request-id middleware and the WSGI handler."""

    name = "apps.core"
    label = "core"
    verbose_name = "Core"
