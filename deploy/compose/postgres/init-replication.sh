#!/usr/bin/env bash
# Runs once, when the primary's data directory is created (docker-entrypoint-initdb.d): a replication role whose
# password comes from the compose secret, and a pg_hba entry letting it stream from the app network.
set -euo pipefail
password=$(cat "$TRADESTACK_REPLICATION_PASSWORD_FILE")
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v password="$password" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
SELECT pg_create_physical_replication_slot('replica_1');
SQL
echo "host replication replicator 172.28.0.0/24 scram-sha-256" >>"$PGDATA/pg_hba.conf"
