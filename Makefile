# syncjob-operator: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
IMG_REGISTRY ?= ghcr.io/tradingagents
IMG_TAG ?= 0.1.0
DASHBOARD_DIST := api/syncjob_api/web/static/dist
CHROMIUM ?= /usr/bin/chromium

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Setup

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the project and its pinned test and dev dependencies.

.PHONY: binaries
binaries: venv ## Build (or find) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok.
	$(PY) -m testbed.binaries

web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "make web needs Node.js >= 20.19 and npm (apt-get install nodejs npm on Debian 13)"; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(DASHBOARD_DIST)/index.html: web/node_modules/.package-lock.json web/index.html web/vite.config.js $(wildcard web/src/*)
	cd web && npm run build --silent

.PHONY: web
web: $(DASHBOARD_DIST)/index.html ## Build the dashboard (web/, Vite) into the API package, served at /dashboard/.

.PHONY: browser
browser: ## Install Debian's chromium (and a CJK font for the screenshots) for the browser tests when missing.
	@test -x $(CHROMIUM) && fc-list :lang=zh | grep -q . || { apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei; }

##@ Development

.PHONY: crds
crds: venv ## Regenerate crds/ from the SyncJob model.
	$(PY) -m syncjob.crd > crds/syncjobs.sync.tradingagents.io.yaml

.PHONY: mongo-users
mongo-users: venv ## Regenerate manifests/mongodb/syncjob-users.js (roles and users) from syncjob/mongo_users.py.
	$(PY) -m syncjob.mongo_users js > manifests/mongodb/syncjob-users.js

.PHONY: lint
lint: venv ## ruff, mypy --strict on the packages, import-linter layers.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy syncjob operator/syncjob_operator api/syncjob_api sync_image
	$(VENV)/bin/lint-imports

##@ Test

.PHONY: test
test: venv binaries web browser ## Run every test: unit, integration on a local control plane and SecantusDB, the images on a real node, the dashboard in a browser.
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Run only the unit tests (no cluster, no database).
	$(PY) -m pytest -m 'not integration' $(PYTEST_ARGS)

.PHONY: screenshots
screenshots: venv binaries web browser ## Regenerate docs/screenshots/*.png from the browser test against the test bed.
	SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/dashboard -p no:cacheprovider $(PYTEST_ARGS)

.PHONY: bench
bench: venv binaries web browser ## Run the benchmarks in bench/ (minutes; figures against floors measured in the same run).
	$(PY) -m bench

##@ Run

.PHONY: demo
demo: venv binaries web ## Start a local demo: control plane, SecantusDB, operator, API, samples; Ctrl-C stops all.
	$(PY) -m testbed.demo

.PHONY: cluster
cluster: venv binaries ## Start only the local control plane (writes .demo/env); Ctrl-C stops it.
	$(PY) -m testbed.demo --cluster-only

##@ Images and deployment

.PHONY: images
images: ## Build the operator, API and sync images: with Docker if it runs, else podman or buildah (BASE_IMAGE=...).
	$(PYTHON) -m testbed.images --registry $(IMG_REGISTRY) --tag $(IMG_TAG)

.PHONY: kind-e2e
kind-e2e: venv images ## End-to-end on kind (needs Docker and kind): the deployed scenario of tests/deploy on manifests/default.
	hack/kind-e2e.sh $(IMG_REGISTRY) $(IMG_TAG)
