"""Django's MySQL/MariaDB backend, with a cheaper health check (see ``base``)."""
