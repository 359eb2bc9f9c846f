# Every target bootstraps its own tools: only Python 3.11 and pip are needed.
PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
export UV_PROJECT_ENVIRONMENT := .venv
export UV_PYTHON_DOWNLOADS := never
# compiled at install: a night's run never parses library source (even where .pyc are not written)
export UV_COMPILE_BYTECODE := 1

.PHONY: setup demo test lint typecheck pytest bench bench-small clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

setup: $(UV)
	$(UV) sync --frozen

demo: setup
	$(UV) run --frozen cmi demo --dir demo

lint: setup
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

typecheck: setup
	$(UV) run --frozen mypy

# two test processes (pytest-xdist): the machines have two cores; a real server's tests share one
PYTEST_WORKERS ?= 2

pytest: setup
	$(UV) run --frozen pytest -n $(PYTEST_WORKERS) --dist loadgroup

test: lint typecheck pytest

bench: setup
	$(UV) run --frozen python -m bench.bench_serials
	$(UV) run --frozen python -m bench.bench_allocation
	$(UV) run --frozen python -m bench.bench_epcis --stored 10000000
	$(UV) run --frozen python -m bench.bench_history --crash
	$(UV) run --frozen python -m bench.bench_delivery
	$(UV) run --frozen python -m bench.bench_csv_limits
	$(UV) run --frozen python -m bench.bench_tenants
	$(UV) run --frozen python -m bench.bench_wide

bench-small: setup
	$(UV) run --frozen python -m bench.bench_serials --scale 0.05
	$(UV) run --frozen python -m bench.bench_allocation --orders 50000 --lines 5000 --items 500
	$(UV) run --frozen python -m bench.bench_epcis --sgtins 50000 --reps 1 --stored 500000
	$(UV) run --frozen python -m bench.bench_history --scale 0.001 --nights 8 --reps 1
	$(UV) run --frozen python -m bench.bench_delivery --serials 100000 --reps 3
	$(UV) run --frozen python -m bench.bench_csv_limits --mb 64
	$(UV) run --frozen python -m bench.bench_tenants --scale 0.05 --overhead-reps 3
	$(UV) run --frozen python -m bench.bench_wide --products 20 --cmos 10 --reps 1

clean:
	rm -rf demo .pytest_cache .mypy_cache .ruff_cache
