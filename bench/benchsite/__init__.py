"""A Django site for `make bench` only: auditgate's own URLs plus the comparison views.

It runs under a private Apache whose mod_wsgi daemon groups are copied from
apache/vhost.conf, and under gunicorn, so every Django scenario has the same shape.
"""
