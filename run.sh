#!/usr/bin/env bash
# Runs the lcvae command inside the repo's virtual environment, creating it on first use.
# With no arguments it runs the built-in demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$root/scripts/bootstrap.sh"
if [ $# -eq 0 ]; then set -- quickstart; fi
exec "$root/.venv/bin/lcvae" "$@"
