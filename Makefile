# The two commands: `make run` and `make test`. Both create the virtual
# environment and install everything they need on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint rules format unit integration e2e bench bench-export bench-token bench-gateway bench-passes bench-tiers clean system-packages

# Debian packages the tests need: promtool (package prometheus), chromium (the
# browser tests drive /usr/bin/chromium with Playwright; Playwright's own browser
# download is not reachable here) and PostgreSQL 15 (the pass registry's store suite
# starts a throwaway server from its binaries). Installed only where missing;
# `apt-get` needs root, as on these machines.
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/sentinel-usage up

system-packages:
	@command -v promtool >/dev/null && test -x /usr/bin/chromium \
		&& test -x /usr/lib/postgresql/15/bin/initdb || { \
		apt-get update -qq && $(APT_INSTALL) prometheus chromium postgresql-15; }

rules: system-packages
	promtool check rules deploy/prometheus/sentinel-usage.rules.yml
	promtool check config --syntax-only deploy/prometheus/scrape.yml
	cd deploy/prometheus && promtool test rules rules.test.yml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint rules
	mkdir -p tests/artifacts
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

e2e: $(STAMP)
	$(BIN)/pytest tests/e2e

# Benchmarks print figures; they are not part of `make test`.
# The whole pipeline (see bench/pipeline_bench.py); its last line is the `bench:` summary.
bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python bench/pipeline_bench.py
	PYTHONPATH=. $(BIN)/python bench/token_bench.py
	PYTHONPATH=. $(BIN)/python bench/gateway_bench.py
	PYTHONPATH=. $(BIN)/python bench/passes_list_bench.py
	PYTHONPATH=. $(BIN)/python bench/tiers_bench.py

# The project's passes page over 20,000 passes: passes_list_ms=, passes_list_deep_ratio=.
bench-tiers: $(STAMP)
	PYTHONPATH=. $(BIN)/python bench/tiers_bench.py

bench-passes: $(STAMP)
	PYTHONPATH=. $(BIN)/python bench/passes_list_bench.py

# The gateway's added latency and throughput ratio: gateway_overhead_us=, gateway_rps_ratio=.
bench-gateway: $(STAMP)
	PYTHONPATH=. $(BIN)/python bench/gateway_bench.py

# Token exchanges through HTTP against a running `up`, 8 clients: token_eps=, token_p99_ms=.
bench-token: $(STAMP)
	PYTHONPATH=. $(BIN)/python bench/token_bench.py

# 10,000-row exports in each format over a 1,000,000-row log.
bench-export: $(STAMP)
	PYTHONPATH=. $(BIN)/python bench/export_bench.py

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
