#!/usr/bin/env bash
# `make run`: start ember on embedded defaults, deploy examples/, show how to call them.
# Ctrl-C stops the server (SIGTERM: every sandbox is reaped, nothing is left behind).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${EMBER_PORT:-9900}"
export EMBER_ENDPOINT="http://127.0.0.1:${PORT}"
DATA_DIR="${EMBER_DATA_DIR:-.ember-data}"
REGION="${EMBER_REGION:-us-east-1}"
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$(pwd)/${DATA_DIR}" ;; esac
# Written by `ember serve` on first start: the default account's root key (profile [ember]).
CREDENTIALS="${DATA_DIR}/credentials"
# Keys of the caller's shell (a real AWS account's, say) must not sign the deployments below.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE

if curl -fsS "${EMBER_ENDPOINT}/health" >/dev/null 2>&1; then
  echo "error: something already answers on ${EMBER_ENDPOINT}; stop it or set EMBER_PORT" >&2
  exit 1
fi

"$BIN/ember" serve --port "$PORT" --data-dir "$DATA_DIR" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER' INT TERM

for _ in $(seq 1 300); do
  curl -fsS "${EMBER_ENDPOINT}/health" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { echo "error: ember serve exited during start-up" >&2; exit 1; }
  sleep 0.1
done

if [ -f "$CREDENTIALS" ]; then
  # The CLI would find .ember-data/credentials by itself; boto3 and the AWS CLI are told below.
  export EMBER_CREDENTIALS="$CREDENTIALS"
  SIGNING="export AWS_SHARED_CREDENTIALS_FILE=${CREDENTIALS} AWS_PROFILE=ember AWS_REGION=${REGION} AWS_DEFAULT_REGION=${REGION}"
else
  # A server that verifies no signatures (--auth none) writes no key: any key signs.
  export AWS_ACCESS_KEY_ID=unverified AWS_SECRET_ACCESS_KEY=unverified
  SIGNING="export AWS_ACCESS_KEY_ID=unverified AWS_SECRET_ACCESS_KEY=unverified AWS_REGION=${REGION} AWS_DEFAULT_REGION=${REGION}"
fi

# The newest Node major this server can run (the host's own node, or one installed).
NODE_RUNTIME=$("$BIN/ember" runtimes ls --json 2>/dev/null \
  | "$BIN/python" -c 'import json, sys; n = [r for r in json.load(sys.stdin).get("available", []) if r.startswith("nodejs")]; print(n[-1] if n else "")' \
  2>/dev/null || true)
for dir in examples/*/; do
  name=$(basename "$dir")
  [ "$name" = manifests ] && continue  # applied below, the declarative way
  if [ -f "$dir/package.json" ]; then  # a Node.js function
    if [ -z "$NODE_RUNTIME" ]; then
      echo "skipped examples/$name: no Node.js here (ember runtimes install nodejs22.x, then make run)"
      continue
    fi
    "$BIN/ember" deploy "$name" "$dir" --handler index.handler --runtime "$NODE_RUNTIME"
    continue
  fi
  "$BIN/ember" deploy "$name" "$dir" --handler app.handler --runtime python3.11
done
"$BIN/ember" apply -f examples/manifests/
# examples/stream answers on a RESPONSE_STREAM function URL (kept from an earlier run).
(
  [ -f "$CREDENTIALS" ] && export AWS_SHARED_CREDENTIALS_FILE="$CREDENTIALS" AWS_PROFILE=ember
  "$BIN/python" - "$EMBER_ENDPOINT" "$REGION" <<'PY'
import sys

import boto3

aws = boto3.client("lambda", endpoint_url=sys.argv[1], region_name=sys.argv[2])
try:
    aws.create_function_url_config(
        FunctionName="stream", AuthType="NONE", InvokeMode="RESPONSE_STREAM"
    )
except aws.exceptions.ResourceConflictException:
    pass
PY
)

cat <<TXT

ember is running on ${EMBER_ENDPOINT} with the examples deployed.
Every request is signed (AWS SigV4). For boto3 and the AWS CLI, in another shell:

  ${SIGNING}
  aws lambda list-functions --endpoint-url ${EMBER_ENDPOINT}

Try:

  CLI:    .venv/bin/ember invoke hello --payload '{"name": "you"}' --log
          .venv/bin/ember invoke transform --payload '{"orders": [{"id": "a1", "amount": 9.5}]}'
          .venv/bin/ember ls        .venv/bin/ember logs hello --follow
          .venv/bin/ember get functions        .venv/bin/ember describe function greet
  MCP:    ${EMBER_ENDPOINT}/mcp (Streamable HTTP; tool "greet"), with a bearer token made by
          .venv/bin/ember tokens create      (or over stdio: .venv/bin/ember mcp --token TOKEN)
  URL:    curl -s ${EMBER_ENDPOINT}/url/greet/    (a function URL of AuthType NONE: unsigned)
  stream: curl -N ${EMBER_ENDPOINT}/url/stream/?from=5   (RESPONSE_STREAM: lines as written)
  boto3:  import boto3  # after the export above
          aws = boto3.client("lambda", endpoint_url="${EMBER_ENDPOINT}")
          print(aws.invoke(FunctionName="context", Payload=b"{}")["Payload"].read())
  keys:   .venv/bin/ember accounts create team        .venv/bin/ember keys ls

Press Ctrl-C to stop.
TXT
wait $SERVER
