#!/usr/bin/env bash
# A throw-away PostgreSQL for development, tests and CI, run as the `postgres` user (PostgreSQL
# refuses to run as root) with data and socket under one directory on 127.0.0.1.
#   cluster/pg.sh start [DIR] [PORT]        prints: export DATABASE_URL=postgresql://collector:collector@127.0.0.1:PORT/collector
#   cluster/pg.sh stop  [DIR]               stops the server and deletes DIR
#   cluster/pg.sh ctl   [DIR] stop|start    stops or starts the server but keeps its data (outage tests)
#   cluster/pg.sh url   [DIR] [PORT]        prints the URL `start` would export; starts nothing
#   cluster/pg.sh --help
# DIR defaults to $PG_DIR, else /tmp/collector-pg; PORT to $PG_PORT, else 55432.
# Exit codes: 0 done; 1 PostgreSQL failed (no server binaries, the server did not start); 64 usage error.
set -euo pipefail

# The header comment above, without its leading "# ".
usage() {
  local line
  {
    read -r line
    while IFS= read -r line && [[ $line == '#'* ]]; do
      line=${line#'#'}
      printf '%s\n' "${line# }"
    done
  } <"${BASH_SOURCE[0]}"
}
usage_error() { echo "pg.sh: $1" >&2; usage >&2; exit 64; }

cmd=${1:-}
case "$cmd" in
  -h | --help) usage; exit 0 ;;
  start | stop | ctl | url) ;;
  "") usage_error "a command is needed" ;;
  *) usage_error "unknown command '$cmd'" ;;
esac
DIR=${2:-${PG_DIR:-/tmp/collector-pg}}
PORT=${3:-${PG_PORT:-55432}}
if [ "$cmd" != ctl ] && ! [[ $PORT =~ ^[0-9]+$ ]]; then usage_error "PORT must be a number, not '$PORT'"; fi
URL="postgresql://collector:collector@127.0.0.1:$PORT/collector"
if [ "$cmd" = url ]; then
  echo "$URL"
  exit 0
fi

DIR=$(realpath -m "$DIR")
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$BIN" ] || { echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
# Run as postgres from / (the caller's directory may be unreadable to that user).
as_pg() { if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
# The server's own account of a failure.
server_log_tail() {
  [ -f "$DIR/server.log" ] || return 0
  echo "pg.sh: the end of $DIR/server.log:" >&2
  tail -n 20 "$DIR/server.log" >&2
}

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
      if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null; then
        echo "pg.sh: the server in $DIR did not start (is port $PORT in use?)" >&2
        server_log_tail
        exit 1
      fi
    fi
    psql_() { as_pg psql -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
    if [ "$(psql_ -c "SELECT 1 FROM pg_roles WHERE rolname='collector'")" != 1 ]; then
      psql_ -c "CREATE ROLE collector LOGIN PASSWORD 'collector' CREATEDB"
      psql_ -c "CREATE DATABASE collector OWNER collector"
    fi
    echo "export DATABASE_URL=$URL"
    ;;
  stop)
    if [ -f "$DIR/data/PG_VERSION" ]; then
      as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    ;;
  ctl)
    # `ctl DIR ACTION`, or `ctl DIR PORT ACTION` (the port is not needed: it is in the data directory).
    action=${4:-${3:-}}
    case "$action" in
      stop | start) ;;
      *) usage_error "ctl needs stop or start, not '$action'" ;;
    esac
    if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 -m fast "$action" >/dev/null; then
      echo "pg.sh: pg_ctl $action failed for $DIR" >&2
      server_log_tail
      exit 1
    fi
    ;;
esac
