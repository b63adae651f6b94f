# wch: `make run` sets up and runs everything on this machine; `make test` sets up and runs the tests.
VENV    ?= .venv
PYTHON  ?= python3
PORT    ?= 8000
BIN      = $(VENV)/bin
# The demo answers Meta's API inside wch unless WHATSAPP_MODE is set: nothing reaches a customer.
DEMO_ENV = WHATSAPP_MODE=$${WHATSAPP_MODE:-sandbox}

.PHONY: run test install install-test services browser deploy-tools lint bench

run: install
	$(BIN)/wch db upgrade
	$(DEMO_ENV) $(BIN)/wch demo --if-empty
	$(DEMO_ENV) $(BIN)/wch up --port $(PORT)

test: install-test services browser deploy-tools
	$(BIN)/ruff check wch tests bench
	$(BIN)/pytest

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

install-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The tests talk to the real RabbitMQ and PostgreSQL; start them when they are down.
services:
	@bash .ci/services

# Browser tests drive Debian's Chromium (a test tool's own browser download does not work offline).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# The deployment files are checked with their own tools (no container engine is needed for that).
deploy-tools:
	@test -x /usr/bin/docker-compose || (apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null)
	@command -v systemd-analyze >/dev/null || (apt-get update -qq && apt-get install -y -qq systemd >/dev/null)

bench: install
	$(BIN)/python -m bench
