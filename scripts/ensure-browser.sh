#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the browser tests (never a downloaded browser build).
set -euo pipefail
for candidate in chromium chromium-browser; do
    if command -v "$candidate" >/dev/null 2>&1; then
        exit 0
    fi
done
if [ "$(id -u)" -ne 0 ]; then
    echo "chromium is missing: install it with 'sudo apt-get install -y chromium'" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null
