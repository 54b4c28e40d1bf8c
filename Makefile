# Two commands matter: `make run` (the local stack) and `make test` (every test).
# Both install what they need into .venv/ and node_modules/ first.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
NODE_STAMP := node_modules/.installed

.PHONY: run test lint unit integration infra e2e bench chaos synth bootstrap deploy destroy lock clean

$(VENV_STAMP): requirements.lock pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check uv==0.13.9
	.venv/bin/uv pip sync -q --python $(PY) requirements.lock
	.venv/bin/uv pip install -q --python $(PY) --no-deps -e .
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

deps: $(VENV_STAMP) $(NODE_STAMP)

run: deps
	$(PY) -m local_stack

test: deps lint
	$(PY) -m pytest -q tests/unit tests/infra tests/integration tests/e2e

lint: $(VENV_STAMP)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

unit: $(VENV_STAMP)
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
CDK := npx --yes aws-cdk@2
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

# Re-pin every Python dependency after editing pyproject.toml.
lock: $(VENV_STAMP)
	.venv/bin/uv pip compile pyproject.toml --all-extras --python-version 3.11 -o requirements.lock

clean:
	rm -rf .venv node_modules cdk.out .pytest_cache .mypy_cache .ruff_cache
