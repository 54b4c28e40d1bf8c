# Two commands matter: `make run` (the local stack) and `make test` (every test).
# Both install what they need into .venv/ and node_modules/ first.
SHELL := /bin/bash
PY := .venv/bin/python
NODE_STAMP := node_modules/.installed

# The venv runs the Lambda runtime's Python (cdk/chat_stack/runtime.py) where this machine has it: on
# PATH, else under pyenv (Debian's apt has no 3.13); else python3 (3.11), ruff and mypy still targeting
# 3.13 (pyproject.toml). Each candidate is run, not just looked up: a pyenv shim is on PATH even when
# its version is not the active one, and then fails.
LAMBDA_PYTHON := 3.13
PYENV_PYTHONS := $(shell ls -d $${PYENV_ROOT:-$(HOME)/.pyenv}/versions/$(LAMBDA_PYTHON).*/bin/python$(LAMBDA_PYTHON) \
	2>/dev/null | sort -rV)
BASE_PYTHON := $(shell for candidate in python$(LAMBDA_PYTHON) $(PYENV_PYTHONS) python3; do \
	"$$candidate" -c 'import sys; print(sys.executable)' 2>/dev/null && break; done)
BASE_PYTHON_VERSION := $(shell $(BASE_PYTHON) -c 'import platform; print(platform.python_version())')
ifeq ($(basename $(BASE_PYTHON_VERSION)),$(LAMBDA_PYTHON))
PYTHON_USED := Python $(BASE_PYTHON_VERSION), the Lambda runtime's ($(BASE_PYTHON))
else
PYTHON_USED := Python $(BASE_PYTHON_VERSION) ($(BASE_PYTHON)): FALLBACK, no Python $(LAMBDA_PYTHON) here; \
	ruff and mypy still target $(LAMBDA_PYTHON)
endif
# Named after the interpreter's version, so that another Python (3.13 installed later) rebuilds the venv.
VENV_STAMP := .venv/.installed-python$(BASE_PYTHON_VERSION)

.PHONY: run test lint unit integration infra e2e bench chaos synth bootstrap deploy destroy lock clean which-python

$(VENV_STAMP): requirements.lock pyproject.toml
	@echo "make: .venv on $(PYTHON_USED)"
	$(BASE_PYTHON) -m venv --clear .venv
	.venv/bin/pip install -q --disable-pip-version-check uv==0.13.9
	.venv/bin/uv pip sync -q --python $(PY) requirements.lock
	.venv/bin/uv pip install -q --python $(PY) --no-deps -e .
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

deps: $(VENV_STAMP) $(NODE_STAMP) which-python

# One line in every run that uses the venv: which Python it is.
which-python: $(VENV_STAMP)
	@echo "make: $(PYTHON_USED)"

run: deps
	$(PY) -m local_stack

test: deps lint
	$(PY) -m pytest -q tests/unit tests/infra tests/integration tests/e2e

lint: $(VENV_STAMP) which-python
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

unit: $(VENV_STAMP) which-python
	$(PY) -m pytest -q tests/unit

integration: deps
	$(PY) -m pytest -q tests/integration

infra: deps
	$(PY) -m pytest -q tests/infra

e2e: deps
	$(PY) -m pytest -q tests/e2e

bench: deps
	$(PY) -m bench

# The fault suite: 10,000 messages under injected faults, 100,000 fuzzed frames (README "Chaos").
chaos: deps
	$(PY) -m chaos

# CDK context (see cdk/chat_stack/settings.py), e.g.
#   make deploy CDK_ARGS="-c stage=prod -c alarmEmail=ops@example.com"
# synth takes only -c flags; bootstrap, deploy and destroy take any CDK CLI flag too.
CDK_ARGS ?=
# The CDK CLI pinned in package.json (its cloud assembly schema must be the lib's or newer: README).
CDK := node_modules/.bin/cdk
CDK_APP := --app "$(PY) cdk/app.py"

synth: deps
	cd cdk && ../$(PY) app.py $(CDK_ARGS)

# Once per account and region, before the first deploy.
bootstrap: deps
	$(CDK) bootstrap $(CDK_APP) $(CDK_ARGS)

deploy: deps
	$(CDK) deploy $(CDK_APP) $(CDK_ARGS)

# Tables, the user pool, the media and access-log buckets are retained (user data): delete them by hand.
destroy: deps
	$(CDK) destroy $(CDK_APP) $(CDK_ARGS)

# Re-pin every Python dependency after editing pyproject.toml, for the Lambda runtime's Python. The pins
# are the same for 3.11 (no markers), so the fallback venv syncs this file too: a pin that drops 3.11
# makes that sync fail, loudly.
lock: $(VENV_STAMP)
	.venv/bin/uv pip compile pyproject.toml --all-extras --python-version $(LAMBDA_PYTHON) -o requirements.lock

clean:
	rm -rf .venv node_modules cdk.out .pytest_cache .mypy_cache .ruff_cache
