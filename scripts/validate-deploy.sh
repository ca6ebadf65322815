#!/usr/bin/env bash
# Offline validation of what deploy/ ships (no Docker engine, no cluster needed):
#   Dockerfile  hadolint at --failure-threshold warning
#   deploy/k8s  `kubectl kustomize` of each overlay, then `kubernetes-validate --strict` (any WARN fails)
#   Argo        `tradestack deploy render-argo` of deploy/release/release.yaml against deploy/k8s/argo/*.schema.json
#   HAProxy     `haproxy -c` of deploy/haproxy/haproxy.cfg
#   nginx       `nginx -t` of deploy/nginx/tradestack.conf with a throwaway self-signed certificate
#   Compose     deploy/compose/compose*.yaml against the vendored Compose Specification schema + this project's
#               rules (scripts/validate_compose.py: the compose v2 plugin is packaged neither by Debian nor on PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
status=0

echo "hadolint Dockerfile"
"$BIN/hadolint" --failure-threshold warning Dockerfile || status=1

for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  rendered=$(mktemp --suffix=".$name.yaml")
  echo "kustomize + kubernetes-validate --strict: $name"
  if ! "$BIN/kubectl" kustomize "$overlay" >"$rendered"; then
    status=1
    continue
  fi
  out=$("$BIN/kubernetes-validate" --strict --quiet "$rendered" 2>&1) || { echo "$out"; status=1; }
  if grep -q "WARN" <<<"$out"; then
    echo "$out"
    echo "warnings count as failures" >&2
    status=1
  fi
  rm -f "$rendered"
done

echo "tradestack deploy check + render-argo, validated against the Argo Rollout/AnalysisTemplate schemas"
"$BIN/tradestack" deploy check deploy/release/release.yaml >/dev/null || status=1
"$BIN/python" scripts/validate-argo.py || status=1

echo "compose files: Compose Specification schema + healthchecks, depends_on, secrets as files, limits"
"$BIN/python" scripts/validate_compose.py || status=1

echo "haproxy -c deploy/haproxy/haproxy.cfg"
TRADESTACK_HAPROXY_SOCKET=/tmp/tradestack-validate.sock TRADESTACK_HAPROXY_BIND=127.0.0.1:8080 \
  TRADESTACK_BLUE_ADDR=127.0.0.1:8101 TRADESTACK_GREEN_ADDR=127.0.0.1:8102 \
  haproxy -c -q -f deploy/haproxy/haproxy.cfg || status=1

echo "nginx -t deploy/nginx/tradestack.conf (self-signed certificate made here)"
work=$(mktemp -d)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/server.key" -out "$work/server.crt" 2>/dev/null
sed -e "s#/etc/tradestack/tls/#$work/#" -e 's#${TRADESTACK_HAPROXY_UPSTREAM}#127.0.0.1:8080#' \
  deploy/nginx/tradestack.conf >"$work/tradestack.conf"
cat >"$work/nginx.conf" <<CONF
pid $work/nginx.pid;
error_log stderr;
events {}
http { include $work/tradestack.conf; }
CONF
nginx -t -q -c "$work/nginx.conf" -e stderr || status=1
rm -rf "$work"

exit $status
