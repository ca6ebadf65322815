#!/usr/bin/env bash
# promtool/prometheus and amtool/alertmanager (Debian packages `prometheus`, `prometheus-alertmanager`)
# for `make lint` (rule and route tests) and the end-to-end alert tests; pgbackrest for `tradestack dr drill`. Idempotent: does nothing
# when the tools are already there. The packages' services are never started by the install
# (a temporary policy-rc.d refuses it), so no daemon is left listening on 9090/9093.
set -euo pipefail
need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v pgbackrest >/dev/null || need+=(pgbackrest)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing ${need[*]}: install the Debian packages (apt-get install ${need[*]})" >&2
  exit 1
fi
policy=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created=1
fi
trap '[ "$created" = 1 ] && rm -f "$policy"' EXIT
for attempt in 1 2 3 4 5; do
  # Another apt-get may hold the lock on a shared machine: wait for it rather than failing.
  if apt-get -o DPkg::Lock::Timeout=300 update -qq \
     && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    exit 0
  fi
  sleep $((attempt * 5))
done
echo "could not install ${need[*]}" >&2
exit 1
