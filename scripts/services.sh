#!/usr/bin/env bash
# Services the test suite talks to: a Redis at 127.0.0.1:6379 (the throttle's
# Redis backend). Reuses one that answers; otherwise starts redis-server
# (installing it on Debian if missing). Never fails the build: without Redis
# the Redis tests are skipped, and say why.
set -uo pipefail

if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    exit 0
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
        redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && exit 0
        sleep 0.1
    done
    echo "redis-server did not answer on 127.0.0.1:6379: the Redis tests will be skipped"
fi
exit 0
