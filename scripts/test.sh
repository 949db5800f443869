#!/usr/bin/env bash
# Set up .venv and run the whole test suite: lint, type check, pytest. Extra args go to pytest.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== pytest"; pytest "$@"
