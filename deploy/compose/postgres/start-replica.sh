#!/usr/bin/env bash
# The streaming replica: on first start, clone the primary with pg_basebackup (-R writes standby.signal and
# primary_conninfo, using the slot the primary's init script created); then run postgres as a hot standby.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  export PGPASSWORD
  PGPASSWORD=$(cat "$TRADESTACK_REPLICATION_PASSWORD_FILE")
  until pg_basebackup --host=postgres-primary --username=replicator --pgdata="$PGDATA" \
      --wal-method=stream --slot=replica_1 --write-recovery-conf --checkpoint=fast --progress; do
    echo "waiting for the primary to accept the replication connection" >&2
    rm -rf "${PGDATA:?}"/*
    sleep 2
  done
  chmod 0700 "$PGDATA"
fi
exec postgres -c hot_standby=on
