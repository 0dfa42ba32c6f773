#!/usr/bin/env bash
# A throw-away PostgreSQL for development, tests and CI, run as the `postgres` user (PostgreSQL
# refuses to run as root) with data and socket under one directory on 127.0.0.1.
#   cluster/pg.sh start [DIR] [PORT]   prints: export DATABASE_URL=postgresql://collector:collector@127.0.0.1:PORT/collector
#   cluster/pg.sh stop  [DIR]
#   cluster/pg.sh ctl   [DIR] stop|start   (stop/start the server but keep its data: outage tests)
set -euo pipefail
cmd=${1:?usage: pg.sh start|stop|ctl [DIR] [PORT]}
DIR=$(realpath -m "${2:-${PG_DIR:-/tmp/collector-pg}}")
PORT=${3:-${PG_PORT:-55432}}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$BIN" ] || { echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
# Run as postgres from / (the caller's directory may be unreadable to that user).
as_pg() { if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }

case "$cmd" in
  start)
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
      mkdir -p "$DIR"
      chmod 0755 "$DIR"
      [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DIR"
      as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
      cat >>"$DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
log_min_messages = warning
CONF
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null
    fi
    psql_() { as_pg psql -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
    if [ "$(psql_ -c "SELECT 1 FROM pg_roles WHERE rolname='collector'")" != 1 ]; then
      psql_ -c "CREATE ROLE collector LOGIN PASSWORD 'collector' CREATEDB"
      psql_ -c "CREATE DATABASE collector OWNER collector"
    fi
    echo "export DATABASE_URL=postgresql://collector:collector@127.0.0.1:$PORT/collector"
    ;;
  stop)
    if [ -f "$DIR/data/PG_VERSION" ]; then
      as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    ;;
  ctl)
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 -m fast "${4:-${3:?ctl needs stop|start}}" >/dev/null
    ;;
  *) echo "usage: pg.sh start|stop|ctl [DIR] [PORT]" >&2; exit 64 ;;
esac
