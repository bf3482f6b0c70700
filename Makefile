# The two commands of a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Debian packages the test rig runs for real (see README, "Tests").
APT_PACKAGES := docker-registry skopeo docker.io apache2-utils postgresql chromium tinyproxy redis-server
APT_COMMANDS := docker-registry skopeo dockerd htpasswd chromium tinyproxy redis-server
PYTEST_ARGS ?=

.PHONY: test demo lint venv apt clean

apt:
	@missing=""; for c in $(APT_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .

test: apt venv lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: apt venv
	$(PY) demo/demo.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
