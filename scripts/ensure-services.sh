#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis the integration tests use answer on 127.0.0.1.
# They are normally already running; if one is installed but stopped and we are root, start it.
set -uo pipefail
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up && [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null; then
  version=$(ls /etc/postgresql 2>/dev/null | head -n1)
  [ -n "$version" ] && pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 30); do pg_up && break; sleep 1; done
fi
if ! redis_up && [ "$(id -u)" = 0 ] && command -v redis-server >/dev/null; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 30); do redis_up && break; sleep 1; done
fi
pg_up && echo "postgresql: up" || echo "postgresql: NOT reachable on 127.0.0.1:5432 (tests fail when CI=true, skip otherwise)"
redis_up && echo "redis: up" || echo "redis: NOT reachable on 127.0.0.1:6379 (tests fail when CI=true, skip otherwise)"
exit 0
