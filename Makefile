# Two entry points for a fresh machine (see README): `make book` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book book-stored check-html test test-fast weights bench clean

# The virtual environment, rebuilt when requirements.txt or pyproject.toml change.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Execute the notebooks (cached when unchanged) and build the HTML book; warnings are errors.
book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

# The same book from the notebooks' committed outputs, executing nothing (about 30 s): what CI
# renders and checks, after `make test` has compared those outputs with a fresh run (nbval).
book-stored: $(STAMP)
	@mkdir -p _build
	sed -e 's/execute_notebooks: cache/execute_notebooks: "off"/' -e 's|: book/_ext|: $(CURDIR)/book/_ext|' \
		_config.yml > _build/_config_stored.yml
	$(BIN)/jupyter-book build . --config _build/_config_stored.yml -W -n --keep-going

# Open every page of the built book (make book or make book-stored first) in headless Chromium
# (tests/html_check.py): fails on JavaScript errors, broken images, unrendered math, broken
# internal links or requests that leave the machine; screenshots in _build/screenshots/.
# Installs Debian's chromium if missing.
CHROMIUM ?= /usr/bin/chromium
check-html: $(STAMP)
	@test -x $(CHROMIUM) || { apt-get update -qq && apt-get install -y -qq chromium; }
	$(BIN)/python tests/html_check.py --chromium $(CHROMIUM)

# The whole test suite: unit tests, papermill fast runs, nbval over the committed notebooks.
test: $(STAMP)
	$(BIN)/python -m pytest tests $(wildcard notebooks/*.ipynb) --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# Unit tests only (no notebooks): a quick loop while developing.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not notebook" -p no:cacheprovider

# Retrain the committed autoencoder weights from their recorded seeds.
weights: $(STAMP)
	$(BIN)/python -m lbreg.models --build dense cnn --out lbreg/weights --threads 1

# Benchmarks (not tests): tables on stdout, JSON in benchmarks/results/ and, with
# BENCH_ARGS="--publish", the copies the book's Performance page reads (book/performance/).
# One thread by default; BENCH_ARGS="--quick" for a smoke run, "--device cuda" on a GPU.
# Installs the peers of benchmark 1 first where missing (the `bench` extra), so that every run
# compares them.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -c "import pyproximal" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[bench]"
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf _build .pytest_cache
