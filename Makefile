# Two commands matter: `make demo` and `make test`. Both set the machine up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := tesseract-ocr tesseract-ocr-eng dcmtk dicom3tools dcm2niix fonts-dejavu-core docker-compose chromium libturbojpeg0

.PHONY: setup system-deps demo up down test lint bench bench-server bench-deid bench-text bench-image bench-pipeline bench-scale bench-gcs lock clean serve

setup: system-deps $(STAMP)

# Debian packages the engine and the tests call (OCR, dcmdump); installed only when missing.
system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The venv is rebuilt from the lock whenever the lock or pyproject changes.
$(STAMP): pyproject.toml requirements/lock.txt requirements/overrides.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || { $(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip >/dev/null; \
	  $(BIN)/python -m pip install -q --disable-pip-version-check "uv>=0.4,<1"; }
	VIRTUAL_ENV=$(VENV) $(UV) pip install -q --compile-bytecode -r requirements/lock.txt
	VIRTUAL_ENV=$(VENV) $(UV) pip install -q --no-deps -e .
	touch $(STAMP)

# Refresh the lock after changing dependency ranges in pyproject.toml.
lock: $(STAMP)
	$(UV) pip compile pyproject.toml --extra airflow --extra dev --python-version 3.11 \
	  --override requirements/overrides.txt -o requirements/lock.txt

demo: setup
	$(BIN)/python -m dicom_deid.demo

up: setup
	$(BIN)/python -m dicom_deid.up

# Stop a `make up` (from another terminal, or after its terminal went away): everything it
# started, within 15 s. No `setup`: stopping must not wait for a venv rebuild.
down:
	$(BIN)/python -m dicom_deid.up --down

test: setup
	$(BIN)/ruff check src tests bench plugins dags
	$(BIN)/python -m pytest -q --durations=25

lint: setup
	$(BIN)/ruff check src tests bench plugins dags

bench: bench-server bench-deid bench-text bench-image bench-pipeline bench-gcs

bench-server: setup
	$(BIN)/python bench/server_throughput.py

bench-deid: setup
	$(BIN)/python bench/deidentify_throughput.py --install-peers
	$(BIN)/python bench/deidentify_per_instance.py

bench-text: setup
	$(BIN)/python bench/text_regions_recall.py --ocr

bench-image: setup
	$(BIN)/python bench/image_redaction_throughput.py --install-peers

bench-pipeline: setup
	$(BIN)/python bench/pipeline_overhead.py

# 2,000 then 20,000 instances through the pipeline and the direct script (about 35 min,
# 50 GiB of disk at the peak): the README's scaling table.
bench-scale: setup
	$(BIN)/python bench/pipeline_overhead.py --instances 2000 --repeat 1
	$(BIN)/python bench/pipeline_overhead.py --instances 20000 --repeat 1

bench-gcs: setup
	$(BIN)/python bench/gcs_emulators.py --objects 3000 --kb 200

serve: setup
	$(BIN)/dicom-deid serve --port 8080 --data-dir data/healthcare

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data .demo
