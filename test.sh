#!/usr/bin/env bash
# Installs lcvae into the repo's virtual environment (first run), checks lint and formatting (ruff,
# configured in pyproject.toml), and runs the test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check --quiet src tests benchmarks || { echo "test.sh: run '.venv/bin/ruff format src tests benchmarks'" >&2; exit 1; }
exec .venv/bin/python -m pytest -q "$@"
