#!/usr/bin/env bash
# Installs Debian's chromium for the report-page test (tests/test_report_page.py), which opens
# report.html in a real headless browser. Quiet no-op when a chromium is already on PATH; without
# root it only warns (the test then skips and says why).
set -euo pipefail
for b in chromium chromium-browser; do
    if command -v "$b" >/dev/null 2>&1; then
        exit 0
    fi
done
if [ "$(id -u)" -ne 0 ]; then
    echo "install_browser: chromium is missing and this is not root; the report-page test will skip." >&2
    echo "install_browser: install it with: sudo apt-get install -y chromium" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: no apt-get here; install chromium by hand to run the report-page test." >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "install_browser: chromium install failed" >&2; exit 1; }
