# Every target runs through uv with the Python pinned in .python-version (never downloaded).
export UV_PYTHON_DOWNLOADS := never
# uv on PATH, else the one installed into the pyenv Python that .python-version selects.
UV ?= $(shell command -v uv >/dev/null 2>&1 && echo uv || echo "python3 -m uv")

.PHONY: help install services demo test test-interop fuzz lint format typecheck check build release-check bench bench-threads bench-invalidation clean workflows docs api-check dist-check

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: .venv/.installed interop/node_modules/.installed  ## .venv with the dev tools, and the npm packages the interop tests drive

# Everything: the extras, the OpenTelemetry SDK the telemetry tests read metrics with,
# and the documentation site's tools.
ALL := --all-extras --group otel-sdk --group docs

.venv/.installed: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync $(ALL)
	@touch $@

interop/node_modules/.installed: interop/package.json interop/package-lock.json
	cd interop && npm ci --no-audit --no-fund
	@touch $@

services: .venv/.installed  ## start MariaDB and Redis if they do not answer (local servers, else docker compose)
	PYTHON=.venv/bin/python ./scripts/services

demo:  ## see the cache work: miss, hit, invalidate, miss, on its own table and entries (installs only what it needs)
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --inexact --no-dev --extra fast
	PYTHON=.venv/bin/python ./scripts/services
	$(UV) run --no-sync mrc demo

test: install services  ## the whole suite with branch coverage, twice: asyncmy + orjson + OpenTelemetry, then aiomysql + stdlib json without OpenTelemetry installed
	MRC_MYSQL_DRIVER=asyncmy $(UV) run $(ALL) pytest --cov --cov-report= --cov-fail-under=0
	MRC_MYSQL_DRIVER=aiomysql MRC_JSON=stdlib $(UV) run --exact --extra fast pytest -m "not otel" --cov --cov-append --cov-report=term
	$(UV) sync --inexact $(ALL)  # back to everything, for the other targets

fuzz: install services  ## the differential tests (against Node; index against scan), more cases, fresh seed (SEED=n replays)
	@seed=$${SEED:-$$(date +%s)}; echo "MRC_FUZZ_SEED=$$seed"; \
	MRC_FUZZ_SEED=$$seed MRC_FUZZ_CASES=1200 $(UV) run $(ALL) pytest -q tests/test_differential.py && \
	MRC_FUZZ_SEED=$$seed MRC_INDEX_CASES=1000 $(UV) run $(ALL) pytest -q tests/test_index.py -k same_keys

test-interop:  ## only the tests that run the real npm package
	$(UV) run $(ALL) pytest -m interop

lint:  ## ruff lint and format check
	$(UV) run $(ALL) ruff check src tests benchmarks scripts
	$(UV) run $(ALL) ruff format --check src tests benchmarks scripts

format:  ## apply ruff's formatting and safe fixes
	$(UV) run $(ALL) ruff format src tests benchmarks scripts
	$(UV) run $(ALL) ruff check --fix src tests benchmarks scripts

typecheck:  ## mypy --strict over src and tests
	$(UV) run $(ALL) mypy

check: lint typecheck workflows docs api-check  ## lint, types, the workflows, the docs site, API compatibility

workflows:  ## actionlint and zizmor over .github/workflows
	$(UV) run $(ALL) actionlint
	$(UV) run $(ALL) zizmor --offline .github/workflows

docs:  ## the documentation site into site/, --strict (broken links and references fail)
	NO_MKDOCS_2_WARNING=1 $(UV) run $(ALL) mkdocs build --strict
	$(UV) run $(ALL) python scripts/check_reference.py

api-check:  ## the public API against the 1.0.0 release: breaking changes fail unless recorded
	$(UV) run $(ALL) python scripts/api_check.py

dist-check:  ## build the sdist and wheel, then twine check --strict and check-wheel-contents
	rm -rf dist
	$(UV) build
	$(UV) run $(ALL) twine check --strict dist/*
	$(UV) run $(ALL) check-wheel-contents dist/*.whl

build:  ## wheel and sdist into dist/
	$(UV) build

release-check: install  ## build, then check the wheel's and sdist's metadata, and that version, CHANGELOG and tag agree
	UV="$(UV)" $(UV) run $(ALL) python scripts/release_check.py

bench-invalidation:  ## invalidation at 100k and 1M keys vs Node and a raw redis-py loop
	$(UV) run $(ALL) python -m benchmarks.invalidation

bench:  ## hits, misses, memory and stampedes vs Node 4.1.0 and the raw floors; what options cost; hits from threads
	$(UV) run $(ALL) python -m benchmarks.cache
	$(UV) run $(ALL) python -m benchmarks.threads

bench-threads:  ## cached hits from threads: the sync client vs redis-py's blocking GET + json, and asyncio.run() per call
	$(UV) run $(ALL) python -m benchmarks.threads

clean:  ## remove build output, caches, .venv and node_modules
	rm -rf dist build site .venv interop/node_modules .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
