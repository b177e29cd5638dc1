# ember: `make run` starts the platform with the examples deployed, `make test`
# runs the whole suite. Both create or update .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test check bench fuzz screenshots clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ember needs Python 3.11 or newer"'
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "installing python3-venv (Debian)"; apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@bash scripts/host-deps.sh
	@touch $(STAMP)

run: setup
	@bash scripts/run.sh

# The whole suite on embedded SQLite, then every server of the end-to-end and
# security suites again in cluster mode on PostgreSQL (unit and contract tests
# already cover every backend in the first run; the cluster tests, which start
# their own PostgreSQL-backed nodes, run once).
test: setup
	@bash scripts/services.sh
	@bash scripts/mcp-tools.sh || echo "MCP conformance suite not installed: its tests will say why"
	@$(BIN)/python -m pytest
	@$(BIN)/python -m pytest --backend postgresql tests/e2e tests/security \
		--ignore tests/e2e/test_cluster.py --ignore tests/e2e/test_upgrade.py \
		--ignore tests/e2e/test_cluster_hosts.py --ignore tests/e2e/test_cluster_roles.py

# The API contract fuzzed longer than make test does (tests/e2e/test_api_fuzz.py):
# 90 cases per operation, over 5,000 signed requests to a real server.
fuzz: setup
	@EMBER_FUZZ_EXAMPLES=$${EMBER_FUZZ_EXAMPLES:-90} $(BIN)/python -m pytest -s -p no:cacheprovider \
		--timeout 1200 tests/e2e/test_api_fuzz.py

check: setup
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup
	@command -v wrk >/dev/null || { echo "installing wrk (Debian)"; apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	@$(BIN)/python bench/run.py
	@cd bench && ../$(BIN)/python bench_async.py
	@bash scripts/services.sh
	@$(BIN)/python bench/bench_throttle.py
	@cd bench && ../$(BIN)/python bench_isolation.py
	@cd bench && ../$(BIN)/python bench_node.py
	@cd bench && ../$(BIN)/python bench_manifests.py
	@cd bench && ../$(BIN)/python bench_mcp.py
	@cd bench && ../$(BIN)/python bench_cluster.py
	@cd bench && ../$(BIN)/python bench_cluster_roles.py
	@cd bench && ../$(BIN)/python bench_auth.py
	@cd bench && ../$(BIN)/python bench_hardening.py
	@cd bench && ../$(BIN)/python bench_esm.py
	@cd bench && ../$(BIN)/python bench_observability.py
	@cd bench && ../$(BIN)/python bench_console.py
	@cd bench && ../$(BIN)/python bench_streaming.py
	@cd bench && ../$(BIN)/python bench_snapstart.py
	@cd bench && ../$(BIN)/python bench_hotpath.py

# PNGs of every console page (docs/console/), from a server with the examples deployed.
screenshots: setup
	@$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) .ember-data .mypy_cache .ruff_cache .pytest_cache
