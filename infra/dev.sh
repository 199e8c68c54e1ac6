#!/usr/bin/env bash
# The whole local stack, in the foreground until Ctrl-C:
#   moto's server (the local AWS) and the Shopify stand-in -> resources from
#   template.yaml and the demo shop -> cargo lambda watch (the functions) ->
#   the trigger runner (SQS triggers).
# Prints a line with "ready" once every function answers. Ctrl-C, a SIGTERM
# from a supervisor (or `timeout`), or any part dying stops everything it
# started. STOCKROOM_ENV_FILE names another settings file (other ports).
set -euo pipefail
cd "$(dirname "$0")/.."

ENV_FILE=${STOCKROOM_ENV_FILE:-infra/local.env}
VENV=.venv
endpoint=$(grep -E '^AWS_ENDPOINT_URL=' "$ENV_FILE" | cut -d= -f2-)
aws_port=${endpoint##*:}
lambda_url=$(grep -E '^LOCAL_LAMBDA_URL=' "$ENV_FILE" | cut -d= -f2-)
lambda_port=${lambda_url##*:}
shopify_port=$(grep -E '^SHOPIFY_LOCAL_PORT=' "$ENV_FILE" | cut -d= -f2- | tr -d "\"' ")
mkdir -p .stack

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$aws_port" "$lambda_port" $shopify_port; do
  if port_busy "$p"; then
    echo "port $p is already in use: is another 'make dev' running? Stop it first." >&2
    exit 1
  fi
done

pids=()
stopping=0
# Stops every part once, whichever way the script ends. A handler must not
# reset its own trap (bash then loses the pending signal), so a flag keeps
# a second signal, or the EXIT trap after a signal, from stopping twice.
cleanup() {
  ((stopping)) && return
  stopping=1
  echo "stopping the local stack..."
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  jobs -p | xargs -r kill 2>/dev/null || true
  wait 2>/dev/null || true
  echo "stopped."
}
on_signal() {
  # A second signal while the first is still stopping the parts (make
  # forwards the SIGTERM it got, so one often comes hard behind another):
  # return to that stop and let it finish, rather than exit half-way.
  ((stopping)) && return
  cleanup
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap cleanup EXIT

# Each part runs in its own process group, so stopping it stops its children.
start() { setsid "$@" & pids+=("$!"); }

echo "building the functions and the local tools..."
cargo build --quiet --bins

echo "starting the emulator on 127.0.0.1:$aws_port (log: .stack/emulator.log)"
start "$VENV/bin/python" infra/emulator.py --port "$aws_port" >.stack/emulator.log 2>&1
# It exits at once when it refuses to start (moto not the pinned version): stop waiting then.
for _ in $(seq 1 200); do
  port_busy "$aws_port" && break
  kill -0 "${pids[-1]}" 2>/dev/null || break
  sleep 0.1
done
if ! port_busy "$aws_port"; then
  echo "the emulator did not start (.stack/emulator.log):" >&2
  tail -n 5 .stack/emulator.log >&2
  exit 1
fi

# Waits until a part listens on its port, or stops waiting if it exits (a refusal to start).
wait_port() {
  local port=$1 name=$2 log=$3
  for _ in $(seq 1 200); do
    port_busy "$port" && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  port_busy "$port" && return 0
  echo "$name did not start ($log):" >&2
  tail -n 5 "$log" >&2
  exit 1
}

if [[ -n "$shopify_port" ]]; then
  echo "starting the Shopify stand-in on 127.0.0.1:$shopify_port (log: .stack/shopify.log)"
  start "$VENV/bin/python" infra/shopify.py --port "$shopify_port" >.stack/shopify.log 2>&1
  wait_port "$shopify_port" "the Shopify stand-in" .stack/shopify.log
fi

echo "creating the resources template.yaml declares..."
target/debug/stockroom-local bootstrap --env-file "$ENV_FILE"
if [[ -n "$shopify_port" ]]; then
  echo "creating the demo shop on the Shopify stand-in..."
  target/debug/stockroom-local shopify-setup --env-file "$ENV_FILE"
fi

echo "starting cargo lambda watch on 127.0.0.1:$lambda_port"
start "$VENV/bin/cargo-lambda" lambda watch --quiet --env-file .stack/functions.env \
  --invoke-address 127.0.0.1 --invoke-port "$lambda_port" --concurrency 4

echo "starting the trigger runner"
start target/debug/stockroom-local triggers --env-file "$ENV_FILE"

target/debug/stockroom-local wait-ready --env-file "$ENV_FILE" &
ready=$!

# Stay in the foreground until Ctrl-C or until one part dies.
set +e
while true; do
  wait -n -p done_pid
  status=$?
  if [[ "${done_pid:-}" == "$ready" && $status -eq 0 ]]; then
    echo "Try: make demo   (Ctrl-C here stops everything)"
    continue
  fi
  if [[ "${done_pid:-}" == "$ready" ]]; then
    echo "the functions did not become ready; stopping" >&2
  else
    echo "a part of the local stack exited (status $status); stopping the rest" >&2
  fi
  exit "$status"
done
