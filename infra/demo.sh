#!/usr/bin/env bash
# `make demo`: runs the story against the local stack, starting the stack
# for the duration of the demo if it is not already running.
# STOCKROOM_ENV_FILE names another settings file, as for `make dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_FILE=${STOCKROOM_ENV_FILE:-infra/local.env}
lambda_url=$(grep -E '^LOCAL_LAMBDA_URL=' "$ENV_FILE" | cut -d= -f2-)
lambda_port=${lambda_url##*:}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cargo build --quiet -p stockroom-local
if port_busy "$lambda_port"; then
  target/debug/stockroom-local wait-ready --env-file "$ENV_FILE" >/dev/null
  exec target/debug/stockroom-local demo --env-file "$ENV_FILE"
fi

echo "no local stack is running: starting one for the demo (log: .stack/dev.log)"
mkdir -p .stack
setsid bash infra/dev.sh >.stack/dev.log 2>&1 &
dev=$!
stop() { kill -TERM "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 1 1800); do
  grep -q "Stockroom is ready" .stack/dev.log 2>/dev/null && break
  kill -0 "$dev" 2>/dev/null || { cat .stack/dev.log >&2; exit 1; }
  sleep 0.5
done
grep -q "Stockroom is ready" .stack/dev.log || { echo "the stack did not become ready" >&2; exit 1; }
target/debug/stockroom-local demo --env-file "$ENV_FILE"
