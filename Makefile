# InternImage for OpenMMLab 2.0. `make test` and `make demo` set everything up on first use.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup test test-fast lint clean-venv
.DEFAULT_GOAL := help

help:
	@echo "make setup      create/update .venv (torch, mmcv built from source, mmdet/mmseg/mmpretrain, ops_dcnv3)"
	@echo "make test       set up if needed, then run the whole test suite"
	@echo "make test-fast  the tests not marked slow"
	@echo "make demo       set up if needed, then train and evaluate Mask R-CNN on the embedded demo data"
	@echo "make lint       ruff"

setup:
	@bash tools/setup_env.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .

clean-venv:
	rm -rf .venv

# Demo targets (detection, segmentation, classification) live beside the tools they drive.
-include $(wildcard tools/mk/*.mk)
