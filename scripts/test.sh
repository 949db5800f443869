#!/usr/bin/env bash
# Set up .venv and run the whole test suite: lint, type check, pytest. Extra args go to pytest.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== docs"
site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"
echo "== pytest"; pytest "$@"
