.PHONY: help install train test test-fast lint format

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## editable install with dev tools
	pip install -e '.[dev]'

train:  ## reference recipe (pass ARGS="regularizer=l1 ...")
	python -m hymtl.train $(ARGS)

test:  ## the whole test suite
	pytest

test-fast:  ## tests not marked slow
	pytest -m "not slow"

lint:  ## ruff check + format check
	ruff check src tests scripts && ruff format --check src tests scripts

format:  ## ruff fix + format
	ruff check --fix src tests scripts && ruff format src tests scripts
