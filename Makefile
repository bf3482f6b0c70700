# The two commands of a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Debian packages the test rig runs for real (see README, "Tests").
APT_PACKAGES := docker-registry skopeo docker.io containerd apache2-utils postgresql chromium tinyproxy redis-server
APT_COMMANDS := docker-registry skopeo dockerd ctr htpasswd chromium tinyproxy redis-server
# What `make demo` and `make demo-ui` need: registries and htpasswd (no browser, no PostgreSQL).
DEMO_APT_PACKAGES := docker-registry apache2-utils
DEMO_APT_COMMANDS := docker-registry htpasswd
PYTEST_ARGS ?=

.PHONY: test test-unit demo demo-ui lint venv venv-demo apt apt-demo clean

apt:
	@missing=""; for c in $(APT_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

apt-demo:
	@missing=""; for c in $(DEMO_APT_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEMO_APT_PACKAGES) >/dev/null; \
	fi

# The test install holds everything the demo needs; otherwise only the demo extra is added.
$(VENV)/.demo-installed: setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ ! -f $(VENV)/.installed ] || [ $(VENV)/.installed -ot setup.cfg ]; then \
	  $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q -e '.[demo]'; fi
	@touch $@

venv-demo: $(VENV)/.demo-installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: apt venv lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The fast lane: tests/unit only (no services, no Airflow database), in seconds.
test-unit: venv
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

demo: apt-demo venv-demo
	@$(PY) demo/demo.py

# The demo inside Airflow, up with the Image mirror pages until Ctrl-C.
demo-ui: apt-demo venv-demo
	@$(PY) demo/demo.py --ui

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
