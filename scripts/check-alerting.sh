#!/usr/bin/env bash
# Alerting and dashboards lint (part of `make lint`): promtool check + test rules, amtool
# check-config + route cases, and scripts/alerting.py's cross-checks (SLO rules up to date,
# runbook links, a firing and a non-firing test per alert, dashboard JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.yml
amtool check-config deploy/alertmanager/alertmanager.yml
failed=0
while read -r expected labels; do
  [[ -z "$expected" || "$expected" == \#* ]] && continue
  # shellcheck disable=SC2086 # the labels are separate arguments
  if ! amtool config routes test --config.file=deploy/alertmanager/alertmanager.yml \
       --verify.receivers="$expected" $labels >/dev/null 2>&1; then
    got=$(amtool config routes test --config.file=deploy/alertmanager/alertmanager.yml $labels 2>/dev/null || true)
    echo "route test failed: {$labels} went to '$got', expected '$expected'" >&2
    failed=1
  fi
done < deploy/alertmanager/routes.test
[ "$failed" = 0 ] || exit 1
echo "alertmanager routes: all cases pass"
"$PYTHON" scripts/alerting.py check
echo "alerting cross-checks: ok"
