# gridgov — the two commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=
SUDO    = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian 12 packages gridgov needs: PostGIS 3 and pgRouting for PostgreSQL 15, GDAL's command
# line tools (independent OGC API / MVT clients in tests), Chromium and a CJK font for the
# browser tests (category names are Chinese).
OS_PACKAGES = postgresql-15 postgresql-15-postgis-3 postgresql-15-pgrouting gdal-bin chromium \
              fonts-wqy-microhei

.PHONY: demo test setup os-packages venv lint typecheck unit serve db-start db-stop clean-db

demo: setup
	$(BIN)/gridgov db start
	$(BIN)/gridgov migrate
	$(BIN)/gridgov demo
	# demo responders patrol the roads while the app serves (docs/dispatch.md), so the
	# dispatch console always has fresh positions; the patrol stops with the server
	$(BIN)/gridgov responders simulate --interval 10 >/dev/null & sim=$$!; \
	trap 'kill $$sim 2>/dev/null' EXIT INT TERM; \
	$(BIN)/gridgov serve --host $(HOST) --port $(PORT)

test: setup lint typecheck
	$(BIN)/gridgov db start
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

setup: os-packages venv

os-packages:
	@missing=""; for p in $(OS_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing OS packages:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

lint: venv
	$(BIN)/ruff check gis layers api tests bench migrations

typecheck: venv
	$(BIN)/mypy gis layers api bench

unit: setup
	$(BIN)/gridgov db start
	$(BIN)/pytest -n 2 -m "not e2e" $(PYTEST_ARGS)

serve: setup
	$(BIN)/gridgov serve --host $(HOST) --port $(PORT)

db-start: venv
	$(BIN)/gridgov db start

db-stop: venv
	$(BIN)/gridgov db stop
