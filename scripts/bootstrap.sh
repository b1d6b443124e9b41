#!/usr/bin/env bash
# Creates .venv under the repo and installs lcvae with everything the tests and the quickstart need.
# Idempotent: it skips the install when pyproject.toml and this script have not changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
stamp=".venv/.lcvae-installed"
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "bootstrap: installing into $root/.venv (first run takes a few minutes)" >&2
    .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" >&2 || true
    # The CPU wheel first: an unpinned torch would pull a 5 GB CUDA build.
    .venv/bin/python -m pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" >&2 || true
    .venv/bin/python -m pip install -q -e ".[all,test]" 2>&1 | grep -v "^WARNING: Location" >&2 || true
    # These two ship LPIPS linear heads and ST-LPIPS weights; their declared torchvision dependency
    # would replace the pinned torch, so they go in without dependencies.
    .venv/bin/python -m pip install -q --no-deps lpips==0.1.4 stlpips-pytorch==0.0.2 2>&1 | grep -v "^WARNING: Location" >&2 || true
    .venv/bin/python -c "import torch, av, safetensors, lcvae" || { echo "bootstrap: install failed" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
