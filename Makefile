# Quanyu: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := $(PYTHON) -m uv

.PHONY: install demo serve test lint typecheck unit fmt bench clean

install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --locked
	npm ci --no-audit --no-fund --loglevel=error

demo: install
	$(UV) run quanyu demo

serve: install
	$(UV) run quanyu serve

lint: install
	$(UV) run ruff check src tests benchmarks
	$(UV) run ruff format --check src tests benchmarks

typecheck: install
	$(UV) run mypy

test: install lint typecheck
	bash scripts/ensure-postgres
	bash scripts/ensure-chromium
	$(UV) run pytest -q -p no:cacheprovider

unit: install
	$(UV) run pytest -q tests/unit

fmt: install
	$(UV) run ruff format src tests benchmarks
	$(UV) run ruff check --fix src tests benchmarks

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
