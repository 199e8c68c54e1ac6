#!/usr/bin/env bash
# `make dev` stopped the way a supervisor stops it: started detached on
# ports of its own, sent SIGTERM once ready (to the make process alone, as
# `timeout` does; to a whole process group, as a process manager does; and
# to the group with a second SIGTERM hard behind, as make forwards the one
# it got), it must leave no part of the stack running and its ports free.
set -euo pipefail
cd "$(dirname "$0")/.."

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run_once() {
  local how=$1 aws_port lambda_port shopify_port env log
  aws_port=$(free_port)
  lambda_port=$(free_port)
  shopify_port=$(free_port)
  env="$work/local.env"
  log="$work/dev.log"
  sed -e "s#^AWS_ENDPOINT_URL=.*#AWS_ENDPOINT_URL=http://127.0.0.1:$aws_port#" \
      -e "s#^LOCAL_LAMBDA_URL=.*#LOCAL_LAMBDA_URL=http://127.0.0.1:$lambda_port#" \
      -e "s#^\([A-Z_]*_QUEUE_URL\)=http://127.0.0.1:[0-9]*/#\1=http://127.0.0.1:$aws_port/#" \
      -e "s#^SHOPIFY_LOCAL_PORT=.*#SHOPIFY_LOCAL_PORT=$shopify_port#" \
      -e "s#^SHOPIFY_ADMIN_URL=http://127.0.0.1:[0-9]*/#SHOPIFY_ADMIN_URL=http://127.0.0.1:$shopify_port/#" \
      infra/local.env >"$env"
  STOCKROOM_ENV_FILE=$env setsid make --no-print-directory dev >"$log" 2>&1 &
  local make_pid=$!
  local ready=0
  for _ in $(seq 1 600); do
    if grep -q "Try: make demo" "$log"; then ready=1; break; fi
    kill -0 "$make_pid" 2>/dev/null || break
    sleep 0.5
  done
  if ((ready == 0)); then
    echo "test-dev-stop: the stack did not become ready:" >&2
    tail -n 20 "$log" >&2
    kill -TERM -- "-$make_pid" 2>/dev/null || true
    exit 1
  fi
  case $how in
    make) kill -TERM "$make_pid" ;;        # what `timeout` does: the direct child only
    group) kill -TERM -- "-$make_pid" ;;   # a process manager: the whole group
    twice)
      # A second SIGTERM while the first is stopping the parts, as make's
      # own forwarded one can land.
      local script
      script=$(pgrep -P "$make_pid" -f infra/dev.sh || true)
      kill -TERM -- "-$make_pid"
      for _ in $(seq 1 50); do
        grep -q "stopping the local stack" "$log" && break
        sleep 0.02
      done
      [[ -n "$script" ]] && kill -TERM "$script" 2>/dev/null
      ;;
  esac
  for _ in $(seq 1 100); do
    kill -0 "$make_pid" 2>/dev/null || break
    sleep 0.1
  done
  sleep 1
  local left
  # This run's parts only (another stack may be running on other ports):
  # each by its port or env file, and dev.sh itself by make's process group.
  left=$(ps -eo pid=,args= | grep -E "emulator.py --port $aws_port|shopify.py --port $shopify_port|--invoke-port $lambda_port|stockroom-local (triggers|wait-ready) --env-file $env" | grep -v grep || true)
  left="${left}$(pgrep -a -g "$make_pid" 2>/dev/null || true)"
  # The stop ran to its end (a second signal must not cut it short).
  grep -q "^stopped\.$" "$log" || left="${left}dev.sh did not finish stopping (no \"stopped.\" in its log)"
  if [[ -n "$left" ]] || port_busy "$aws_port" || port_busy "$lambda_port" || port_busy "$shopify_port"; then
    echo "test-dev-stop ($how): SIGTERM left the local stack running:" >&2
    echo "$left" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  # The stand-in ran and the demo shop was made on it.
  grep -q "Shopify stand-in: stockroom-demo.myshopify.com" "$log" || {
    echo "test-dev-stop ($how): the demo shop was not created on the Shopify stand-in:" >&2
    tail -n 20 "$log" >&2
    exit 1
  }
  echo "test-dev-stop ($how): SIGTERM stopped every part; ports $aws_port, $lambda_port and $shopify_port are free"
}

run_once make
run_once group
run_once twice
