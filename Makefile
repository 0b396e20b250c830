# Two set-up commands: `make demo` (install, run the bundled model on a synthesised scene)
# and `make test` (install the dev extras, lint, type-check, run the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install install-dev install-compat check-programs mutation screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

# The other stack the edge supports, for tests/edge/test_compat.py: numpy 1.x with tflite-runtime
# 2.14, whose wheels exist for CPython 3.11 only (elsewhere this says so and the test skips).
install-compat:
	@if $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
		test -x .venv-compat/bin/python || $(PYTHON) -m venv .venv-compat; \
		.venv-compat/bin/pip install --quiet 'numpy>=1.24,<2' 'tflite-runtime==2.14.*' && \
		.venv-compat/bin/pip install --quiet --no-deps -e .; \
	else echo "install-compat: tflite-runtime 2.14 needs CPython 3.11; tests/edge/test_compat.py will skip"; fi

demo: install
	$(BIN)/scream demo

lint: install-dev
	$(BIN)/ruff check edge train deploy tests
	$(BIN)/ruff format --check edge train deploy tests
	$(BIN)/mypy

# The programs the tests start (tests/system-packages.txt): missing ones stop the run here, named
# with their apt line, instead of failing test by test. .ci/run installs them.
check-programs:
	@missing=$$(while read -r program package; do \
		case "$$program" in "" | "#"*) continue ;; esac; \
		command -v "$$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$$program" ] || echo "$$package"; \
	done <tests/system-packages.txt | sort -u | tr '\n' ' '); \
	if [ -n "$$missing" ]; then \
		echo "make test: programs the tests need are missing: sudo apt-get install $$missing(or run .ci/run)" >&2; \
		exit 1; \
	fi

# The suite in parallel (pytest-xdist): one worker per core, at most 4, each running whole files so a
# file's module fixtures are made once. `$(BIN)/pytest PATH` alone runs serially as ever.
test: check-programs lint install-compat
	$(BIN)/pytest -n auto --maxprocesses 4 --dist loadfile

# Mutation testing (mutmut, [tool.mutmut] in pyproject.toml): not part of `make test`. Prints each
# module's score and its survivors; exits 1 when a module is under 90%.
mutation: install-dev
	$(BIN)/pip install --quiet -e '.[mutation]'
	rm -rf mutants .mutation-model
	SCREAM_TEST_MODEL_CACHE=$(CURDIR)/.mutation-model $(BIN)/mutmut run >/dev/null || true
	$(BIN)/python tests/mutation_report.py

# The README's review walk-through pictures, taken by the browser test in headless chromium.
screenshots: install-dev
	SCREAM_SCREENSHOTS=docs/review $(BIN)/pytest -q -p no:warnings tests/edge/test_review_browser.py

clean:
	rm -rf $(VENV) .venv-compat .pytest_cache .mypy_cache .ruff_cache mutants .mutation-model
