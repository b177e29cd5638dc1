#!/usr/bin/env bash
# Services the test suite talks to. Each is reused when one answers; otherwise
# started here (installing it from Debian if missing). Never fails the build:
# without a service, the tests that need it are skipped and say why.
#   Redis at 127.0.0.1:6379        the throttle's Redis backend
#   PostgreSQL at 127.0.0.1:5432   cluster mode's metadata, queue and blobs
#   RabbitMQ at 127.0.0.1:5672     event source mappings (guest/guest, vhost /)
#   NATS at 127.0.0.1:4222         JetStream event source mappings (ember's extension)
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

amqp_answers() {
    # A TCP connect is not enough: the Erlang node opens 5672 before it takes logins.
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672 && printf "AMQP\x00\x00\x09\x01" >&3 \
        && head -c 4 <&3' 2>/dev/null | grep -q .
}

start_rabbitmq() {
    if amqp_answers; then
        return 0
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        echo "installing rabbitmq-server (Debian)"
        { apt-get update -qq && apt-get install -y -qq rabbitmq-server >/dev/null; } \
            || { echo "could not install rabbitmq-server: the event source tests will be skipped"; return 0; }
    fi
    # Debian's package may have started its own broker: use it once it answers.
    if ! amqp_answers; then
        # guest/guest may log in from loopback only, which is where the suite connects.
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=5672 rabbitmq-server -detached \
            >/dev/null 2>&1 || true
    fi
    for _ in $(seq 120); do
        amqp_answers && return 0
        sleep 0.5
    done
    echo "RabbitMQ did not answer on 127.0.0.1:5672: the event source tests will be skipped"
}

NATS_DIR=${EMBER_NATS_DIR:-/tmp/ember-test-nats}

nats_answers() {
    # The server greets every client with INFO; JetStream must be on (-js) as well.
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/4222 && head -n 1 <&3' 2>/dev/null \
        | grep -q '"jetstream":true'
}

start_nats() {
    if nats_answers; then
        return 0
    fi
    if ! command -v nats-server >/dev/null 2>&1; then
        echo "installing nats-server (Debian)"
        { apt-get update -qq && apt-get install -y -qq nats-server >/dev/null; } \
            || { echo "could not install nats-server: the NATS event source tests will be skipped"; return 0; }
    fi
    mkdir -p "$NATS_DIR"
    nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$NATS_DIR" >"$NATS_DIR/log" 2>&1 &
    for _ in $(seq 50); do
        nats_answers && return 0
        sleep 0.1
    done
    echo "NATS did not answer on 127.0.0.1:4222 with JetStream: its tests will be skipped"
}

start_redis
start_postgres
start_rabbitmq
start_nats
exit 0
