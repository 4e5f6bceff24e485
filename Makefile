# Two entry points for a fresh machine (see README): `make book` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test test-fast weights clean

# The virtual environment, rebuilt when requirements.txt or pyproject.toml change.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Execute the notebooks (cached when unchanged) and build the HTML book; warnings are errors.
book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

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

clean:
	rm -rf _build .pytest_cache
