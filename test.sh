#!/usr/bin/env bash
# Installs lcvae into the repo's virtual environment (first run) and runs the test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
exec .venv/bin/python -m pytest -q "$@"
