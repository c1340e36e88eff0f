#!/usr/bin/env bash
# Installs everything the project runs and tests with, pinned: .venv (pip, from pyproject.toml)
# and node_modules (npm, from package-lock.json) in the repo itself, and Debian's mosquitto and
# postgresql where missing (scripts/services.sh; the tests start throwaway instances of them).
# Idempotent: a second run only checks. Needs python3.11+, node 20 + npm, Debian's apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "[setup] pip install -e '.[test]'"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
  # constraints.txt pins every transitive dependency to the versions the tests last passed with
  # (regenerate: .venv/bin/pip freeze --exclude-editable > constraints.txt).
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if [ -f package-lock.json ]; then
  lockstamp=node_modules/.installed-$(sha256sum package-lock.json | cut -c1-16)
  if [ ! -f "$lockstamp" ]; then
    echo "[setup] npm ci (pinned by package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error
    touch "$lockstamp"
  fi
fi
scripts/services.sh
echo "[setup] ready"
