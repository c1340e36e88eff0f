# Every target installs what it needs first (scripts/setup.sh is idempotent and pinned).
PY := .venv/bin/python

.PHONY: setup demo test lint bench fuzz

setup:
	./scripts/setup.sh

demo: setup
	$(PY) -m relayer.cli devnet -c config.toml --messages 100

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: setup
	$(PY) bench/proofs.py

fuzz: setup
	$(PY) -m tests.fuzz.run --seconds 60
