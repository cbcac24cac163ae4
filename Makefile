# mailroom — see README.md. Every target installs what it needs first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SERVICES := ingest contacts conversations outbound notifier
PACKAGES := shared $(addprefix services/,$(SERVICES)) cli
STAMP := $(VENV)/.installed

.PHONY: install run migrate test test-unit lint docs bench chaos fuzz clean

$(STAMP): constraints.txt requirements-dev.txt testing/pyproject.toml $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (or make PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==24.3.1"
	$(BIN)/pip install --quiet -c constraints.txt $(addprefix -e ,$(PACKAGES)) -r requirements-dev.txt
	touch $(STAMP)

# the web inbox (web/, docs/web-inbox.md): built from the lockfile (npm ci), no CDN at run time
WEB_BUILT := web/dist/index.html
$(WEB_BUILT): web/package.json web/package-lock.json web/build.mjs $(wildcard web/src/*)
	@command -v npm >/dev/null || { echo "npm not found: install Node.js and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	cd web && npm ci --no-audit --no-fund && npm run build

install: $(STAMP) $(WEB_BUILT)

migrate: install
	$(BIN)/mailroom migrate

run: install
	$(BIN)/mailroom run

# tests run in TEST_WORKERS processes, a test file each at a time (every test has its own vhost and
# databases): 8.8 min instead of 13.6 on 2 cores
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

test-unit: install
	$(BIN)/python -m pytest -m "not integration"

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

docs: install
	$(BIN)/mailroom docs

# options after BENCH_ARGS, e.g. make bench BENCH_ARGS="--quick --skip-scale" (bench/run.py --help)
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# every service killed once, RabbitMQ and PostgreSQL restarted (private instances), then counted:
# lost and duplicated must be 0 (CHAOS_EMAILS, default 2,000; results in var/chaos.json)
chaos: install
	mkdir -p var
	$(BIN)/python chaos/run.py --json var/chaos.json $(CHAOS_ARGS)

# the parser fuzzer for FUZZ_SECONDS (default 600); findings under var/fuzz/
fuzz: install
	$(BIN)/python fuzz/fuzz_parse.py --seconds $${FUZZ_SECONDS:-600}

clean:
	rm -rf $(VENV) var web/dist web/node_modules
