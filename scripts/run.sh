#!/usr/bin/env bash
# `make run`: start ember on embedded defaults, deploy examples/, show how to call them.
# Ctrl-C stops the server (SIGTERM: every sandbox is reaped, nothing is left behind).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${EMBER_PORT:-9900}"
export EMBER_ENDPOINT="http://127.0.0.1:${PORT}"

if curl -fsS "${EMBER_ENDPOINT}/health" >/dev/null 2>&1; then
  echo "error: something already answers on ${EMBER_ENDPOINT}; stop it or set EMBER_PORT" >&2
  exit 1
fi

"$BIN/ember" serve --port "$PORT" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER' INT TERM

for _ in $(seq 1 300); do
  curl -fsS "${EMBER_ENDPOINT}/health" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { echo "error: ember serve exited during start-up" >&2; exit 1; }
  sleep 0.1
done

for dir in examples/*/; do
  name=$(basename "$dir")
  [ "$name" = manifests ] && continue  # applied below, the declarative way
  "$BIN/ember" deploy "$name" "$dir" --handler app.handler --runtime python3.11
done
"$BIN/ember" apply -f examples/manifests/

cat <<TXT

ember is running on ${EMBER_ENDPOINT} with the examples deployed. Try:

  CLI:    .venv/bin/ember invoke hello --payload '{"name": "you"}' --log
          .venv/bin/ember invoke transform --payload '{"orders": [{"id": "a1", "amount": 9.5}]}'
          .venv/bin/ember ls        .venv/bin/ember logs hello --follow
          .venv/bin/ember get functions        .venv/bin/ember describe function greet
  MCP:    ${EMBER_ENDPOINT}/mcp (Streamable HTTP; tool "greet"), or: .venv/bin/ember mcp
  curl:   curl -s -X POST ${EMBER_ENDPOINT}/2015-03-31/functions/hello/invocations -d '{"name": "curl"}'
  boto3:  import boto3
          aws = boto3.client("lambda", endpoint_url="${EMBER_ENDPOINT}", region_name="us-east-1",
                             aws_access_key_id="x", aws_secret_access_key="x")
          print(aws.invoke(FunctionName="context", Payload=b"{}")["Payload"].read())

Press Ctrl-C to stop.
TXT
wait $SERVER
