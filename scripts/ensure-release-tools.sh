#!/usr/bin/env bash
# The release tests and `make lint` drive real HAProxy, Prometheus and nginx (Debian packages):
# install the ones that are missing (apt-get update once), skip when all are present.
set -euo pipefail
missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v nginx >/dev/null || missing+=(nginx)
command -v openssl >/dev/null || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing release tools: ${missing[*]} (install them with your package manager)" >&2
  exit 1
fi
apt-get -o DPkg::Lock::Timeout=600 update -qq
# Installing must not start the packaged services: the tests start their own on free ports.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.release-tools
chmod +x /usr/sbin/policy-rc.d.release-tools
had_policy=0
[ -e /usr/sbin/policy-rc.d ] && had_policy=1
[ "$had_policy" = 1 ] || cp /usr/sbin/policy-rc.d.release-tools /usr/sbin/policy-rc.d
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$had_policy" = 1 ] || rm -f /usr/sbin/policy-rc.d
rm -f /usr/sbin/policy-rc.d.release-tools
