#!/usr/bin/env bash
# The HTTP benchmarks drive load with wrk (Debian package); install it when missing and we are root.
set -euo pipefail
command -v wrk >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
else
  echo "wrk is not installed; the benchmarks fall back to a slower Python load generator" >&2
fi
