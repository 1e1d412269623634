# auditgate: deploy, test and develop. `make` alone lists the targets.
#
# Every virtualenv is built by Debian's /usr/bin/python3, never by the python3 first on
# PATH: mod_wsgi links the system libpython, and the venvs must match it.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

SYSTEM_PYTHON := /usr/bin/python3
# Controller tools (Ansible), rebuilt only when ansible/requirements.txt changes.
TOOLS := .venv-tools
# Development and test virtualenv (requirements-dev.txt includes requirements.txt).
VENV := .venv

INVENTORY ?= ansible/inventories/local
ANSIBLE_ARGS ?=
PYTEST_ARGS ?=
# make test provisions this host and owns it for the run, so its fault tests may restart
# MariaDB (tests/deployed/test_database_restart.py). Set 0 on a host shared with others.
AUDITGATE_TEST_DB_RESTART ?= 1
export AUDITGATE_TEST_DB_RESTART
BENCH_ARGS ?=

# `make dev`: mod_wsgi-express on http://localhost:$(DEV_PORT)/ with the development settings.
DEV_PORT ?= 8000
# Env file(s) for `make dev` (colon-separated). After `make deploy` the deployed settings
# (its MariaDB database and credentials); otherwise only the AUDITGATE_DEV defaults.
DEV_ENV_FILE ?= $(wildcard /etc/auditgate/auditgate.env)
# mod_wsgi-express refuses to run its workers as root; the app's account can read the env file.
DEV_USER ?= $(if $(DEV_ENV_FILE),auditgate,www-data)
# Development overrides of the deployed settings: plain http, static files from the working tree.
DEV_SETTINGS = AUDITGATE_DEV=true AUDITGATE_ENV_FILE='$(DEV_ENV_FILE)' AUDITGATE_HTTPS=false \
	AUDITGATE_STATIC_ROOT=$(CURDIR)/.build/static

# Exported, so that every ansible-playbook (also those the test suite starts) reads it.
export ANSIBLE_CONFIG := $(CURDIR)/ansible/ansible.cfg

.PHONY: help deploy rollback tools venv test lint dev bench bench-audit

help: ## List the targets.
	@echo "Targets:"
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'
	@echo "Variables: INVENTORY=$(INVENTORY) ANSIBLE_ARGS='$(ANSIBLE_ARGS)' PYTEST_ARGS='$(PYTEST_ARGS)' DEV_PORT=$(DEV_PORT)"

tools: $(TOOLS)/.stamp ## Install Ansible into .venv-tools.

$(TOOLS)/.stamp: ansible/requirements.txt
	@if ! dpkg-query -W -f='$${Status}' python3-venv 2>/dev/null | grep -q 'ok installed'; then \
		echo "Installing python3-venv"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	fi
	test -x $(TOOLS)/bin/python || $(SYSTEM_PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q -r ansible/requirements.txt
	touch $@

deploy: tools ## Provision this host (run as root): MariaDB, Apache + mod_wsgi, the app.
	$(TOOLS)/bin/ansible-playbook -i $(INVENTORY) ansible/site.yml $(ANSIBLE_ARGS)

rollback: tools ## Serve the previous release again on every web host, one at a time (INVENTORY=...).
	$(TOOLS)/bin/ansible-playbook -i $(INVENTORY) ansible/site.yml -e app_rollback=true $(ANSIBLE_ARGS)

venv: $(VENV)/.stamp ## Create the dev/test virtualenv .venv (needs apache2-dev: run deploy first).

$(VENV)/.stamp: requirements.txt requirements-dev.txt
	test -x $(VENV)/bin/python || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

test: deploy ## Deploy, then run the test suite (PYTEST_ARGS=... to pass options).
	$(MAKE) --no-print-directory venv
	@# The browser tests drive Debian's headless Chromium (tests/deployed/test_browser.py).
	@if ! dpkg-query -W -f='$${Status}' chromium-driver 2>/dev/null | grep -q 'ok installed'; then \
		echo "Installing chromium and chromium-driver for the browser tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi
	@# The SIEM tests run their own rsyslogd with TLS (tests/siem/receivers.py); they never touch the
	@# system's rsyslog, which installing the package may start on a fresh host.
	@if ! dpkg-query -W -f='$${Status}' rsyslog-gnutls 2>/dev/null | grep -q 'ok installed'; then \
		echo "Installing rsyslog and rsyslog-gnutls for the SIEM tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog rsyslog-gnutls; \
	fi
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: venv tools ## ruff check + format check, mypy, and the playbooks' syntax for every inventory.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@# mypy imports the settings (django-stubs): the development defaults need no secrets.
	AUDITGATE_DEV=true AUDITGATE_ENV_FILE= $(VENV)/bin/mypy
	$(TOOLS)/bin/ansible-playbook --syntax-check -i ansible/inventories/local ansible/site.yml
	$(TOOLS)/bin/ansible-playbook --syntax-check -i ansible/inventories/example-multi ansible/site.yml
	$(TOOLS)/bin/ansible-playbook --syntax-check -i ansible/inventories/test-multi ansible/site.yml
	$(TOOLS)/bin/ansible-playbook --syntax-check -i ansible/inventories/example-multi ansible/promote.yml

# The API/gateway split of apache/vhost.conf: express's own group serves everything but /gw/,
# which goes to a second group (.build/dev-gateway.conf), so a nested call back into the
# API never waits for a thread of the gateway group. Unlike the deployment, one gateway group
# serves every hop level of service chains (its name is not a level group's, so the gateway
# does not check the level against it): enough for a developer's few requests.
DEV_SERVER_ROOT := $(CURDIR)/.build/mod_wsgi-express
DEV_GATEWAY_CONF := $(CURDIR)/.build/dev-gateway.conf

dev: venv ## Serve the working tree with mod_wsgi-express on DEV_PORT, /gw/ in its own group (never runserver).
	$(DEV_SETTINGS) $(VENV)/bin/python site/manage.py collectstatic --noinput -v 0
	mkdir -p .build
	printf '%s\n' \
		'WSGIDaemonProcess dev-gateway display-name=(dev-auditgate-gw) processes=2 threads=8 \' \
		'    home=$(CURDIR)/site python-home=$(abspath $(VENV)) python-path=$(CURDIR):$(CURDIR)/site \' \
		'    lang=C.UTF-8 locale=C.UTF-8 $(if $(filter 0,$(shell id -u)),user=$(DEV_USER) group=$(DEV_USER)) \' \
		'    listen-backlog=100 connect-timeout=5 queue-timeout=5 socket-timeout=45 request-timeout=60' \
		'WSGIHandlerScript wsgi-gateway $(DEV_SERVER_ROOT)/handler.wsgi process-group=dev-gateway application-group=%{GLOBAL}' \
		'WSGIImportScript $(DEV_SERVER_ROOT)/handler.wsgi process-group=dev-gateway application-group=%{GLOBAL}' \
		'<Location /gw/>' '    RewriteEngine On' '    RewriteRule .* - [H=wsgi-gateway]' '</Location>' \
		> $(DEV_GATEWAY_CONF)
	$(DEV_SETTINGS) $(VENV)/bin/mod_wsgi-express start-server site/auditgate/wsgi.py \
		--port $(DEV_PORT) --processes 2 --threads 4 \
		--url-alias /static $(CURDIR)/.build/static \
		--working-directory site --python-path $(CURDIR) --python-path $(CURDIR)/site \
		--server-root $(DEV_SERVER_ROOT) --include-file $(DEV_GATEWAY_CONF) \
		--locale C.UTF-8 --log-to-terminal \
		$(if $(filter 0,$(shell id -u)),--user $(DEV_USER) --group $(DEV_USER))

ROWS ?= 1000000
bench: deploy ## Gateway vs nginx, Django, django-revproxy, gunicorn (wrk, loopback; BENCH_ARGS=...).
	$(SYSTEM_PYTHON) bench/gateway_bench.py $(BENCH_ARGS)

bench-audit: venv ## Audit trail benchmark at ROWS events (its own database; not part of test).
	$(VENV)/bin/python bench/audit_bench.py --rows $(ROWS)
