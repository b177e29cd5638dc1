#!/usr/bin/env bash
# Services the test suite talks to. Each is reused when one answers; otherwise
# started here (installing it from Debian if missing). Never fails the build:
# without a service, the tests that need it are skipped and say why.
#   Redis at 127.0.0.1:6379        the throttle's Redis backend
#   PostgreSQL at 127.0.0.1:5432   cluster mode's metadata, queue and blobs
set -uo pipefail

start_redis() {
    if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "installing redis-server (Debian)"
        { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; } \
            || echo "could not install redis-server: the Redis tests will be skipped"
    fi
    if command -v redis-server >/dev/null 2>&1; then
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
            >/dev/null
        for _ in $(seq 50); do
            redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return 0
            sleep 0.1
        done
        echo "redis-server did not answer on 127.0.0.1:6379: the Redis tests will be skipped"
    fi
}

# A throwaway cluster of the suite's own (initdb into a temp dir, trust auth on
# loopback), used only where no PostgreSQL answers, as on a fresh CI machine.
PG_DIR=${EMBER_PG_DIR:-/tmp/ember-test-postgres}

start_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
        && psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
        return 0
    fi
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    if [ -z "$bin" ]; then
        echo "installing postgresql (Debian)"
        { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; } \
            || { echo "could not install postgresql: the PostgreSQL tests will be skipped"; return 0; }
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    fi
    # Debian's package may have started its own cluster on 5432: use it if it answers.
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
        && psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
        return 0
    fi
    id postgres >/dev/null 2>&1 || useradd --system --home "$PG_DIR" postgres
    if [ ! -s "$PG_DIR/data/PG_VERSION" ]; then
        rm -rf "$PG_DIR" && mkdir -p "$PG_DIR" && chown postgres "$PG_DIR"
        su postgres -s /bin/sh -c "$bin/initdb -D $PG_DIR/data -U postgres -A trust" >/dev/null \
            || { echo "initdb failed: the PostgreSQL tests will be skipped"; return 0; }
    fi
    su postgres -s /bin/sh -c "$bin/pg_ctl -D $PG_DIR/data -l $PG_DIR/log -w start \
        -o '-h 127.0.0.1 -p 5432 -k $PG_DIR -c max_connections=400 -c fsync=on'" >/dev/null \
        || echo "PostgreSQL did not start (see $PG_DIR/log): the PostgreSQL tests will be skipped"
}

start_redis
start_postgres
exit 0
