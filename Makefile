# Two set-up commands: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime

.PHONY: run test lint typecheck bench bench-images clean redis-server deploy-tools chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUNTIME)

# Runtime dependencies only (no test or lint tools), with libvips for the demo's image
# presets; `make test` adds the dev extras.
$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[images]'
	touch $(RUNTIME)

run: $(RUNTIME)
	$(BIN)/mediaproxy demo --config config/mediaproxy.toml

test: $(STAMP) redis-server deploy-tools chromium
	$(BIN)/python -m pytest -q

# tests/cluster start their own redis-server: install the Debian package when missing, with a
# temporary policy-rc.d so the system service is not started (tests run their own, on a free port).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server (Debian package) for tests/cluster"; \
	    policy=""; [ -e /usr/sbin/policy-rc.d ] || { policy=/usr/sbin/policy-rc.d; \
	      printf '#!/bin/sh\nexit 101\n' > $$policy; chmod 755 $$policy; }; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends redis-server >/dev/null; status=$$?; \
	    [ -z "$$policy" ] || rm -f $$policy; \
	    [ $$status = 0 ] || { echo "apt-get install redis-server failed" >&2; exit $$status; }; \
	  else \
	    echo "redis-server is not on PATH and this is not root: tests/cluster will be skipped;" \
	      "install it with: sudo apt-get install --no-install-recommends redis-server"; \
	  fi; \
	}

# tests/deploy check the deployment kit with the tools operators run: promtool (Debian package
# prometheus) and systemd-analyze (Debian package systemd). Installed when missing, like
# redis-server above, with a temporary policy-rc.d so no service is started.
DEPLOY_TOOLS := promtool:prometheus systemd-analyze:systemd
deploy-tools:
	@missing=""; for pair in $(DEPLOY_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	[ -z "$$missing" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (Debian packages) for tests/deploy"; \
	    policy=""; [ -e /usr/sbin/policy-rc.d ] || { policy=/usr/sbin/policy-rc.d; \
	      printf '#!/bin/sh\nexit 101\n' > $$policy; chmod 755 $$policy; }; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null; status=$$?; \
	    [ -z "$$policy" ] || rm -f $$policy; \
	    [ $$status = 0 ] || { echo "apt-get install$$missing failed" >&2; exit $$status; }; \
	  else \
	    echo "missing$$missing and this is not root: tests/deploy will fail;" \
	      "install with: sudo apt-get install --no-install-recommends$$missing"; \
	  fi; \
	}

# tests/console drive the admin console in a real headless browser: Debian's chromium and its
# chromedriver (Selenium is pointed at /usr/bin/chromedriver and never downloads a driver).
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver (Debian packages) for tests/console"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium chromium-driver >/dev/null \
	      || { echo "apt-get install chromium chromium-driver failed" >&2; exit 1; }; \
	  else \
	    echo "chromium or chromedriver is not on PATH and this is not root: tests/console will" \
	      "be skipped; install them with:" \
	      "sudo apt-get install --no-install-recommends chromium chromium-driver"; \
	  fi; \
	}

lint: $(STAMP)
	$(BIN)/ruff check proxy origin tests
	$(BIN)/mypy

bench: $(STAMP)
	bash bench/run.sh

# Cold conversions: mediaproxy's engine against thumbor (own venv under var/bench) and nginx
# image_filter when its module is installed; prints figures and ratios.
bench-images: $(STAMP)
	$(BIN)/python -m bench.images

clean:
	rm -rf $(VENV) var
