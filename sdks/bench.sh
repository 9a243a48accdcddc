#!/usr/bin/env bash
# emit() cost per call (p50/p99, ns) and delivered events/s for each SDK and
# transport, beside the Rust emitter's figures from the same run
# (`auditlog bench ingest`, embedded and RabbitMQ). Starts its own `auditlog
# auditor` (HTTP, and one consuming a RabbitMQ queue of its own) on free ports.
#
#   sdks/bench.sh                     # 200 000 events each; release binary if built, else debug
#   BENCH_EVENTS=50000 sdks/bench.sh
#
# Run sdks/test.sh first (it installs the Node packages and target/sdk-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

events=${BENCH_EVENTS:-200000}
binary=${AUDITLOG_BIN:-}
if [ -z "$binary" ]; then
  if [ -x target/release/auditlog ]; then binary=target/release/auditlog; else binary=target/debug/auditlog; fi
fi
amqp_url=${AUDITLOG_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
python=target/sdk-venv/bin/python
echo "binary: $binary; events per run: $events"

work=$(mktemp -d)
tag="sdkbench$$"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  # The run's exchange and queues, off the broker.
  "$python" - "$amqp_url" "$tag" <<'PY' 2>/dev/null || true
import sys, pika
connection = pika.BlockingConnection(pika.URLParameters(sys.argv[1]))
channel = connection.channel()
for queue in (f"{sys.argv[2]}-q", f"{sys.argv[2]}-q.dlq"):
    channel.queue_delete(queue)
channel.exchange_delete(f"{sys.argv[2]}-ex")
connection.close()
PY
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_auditor() { # dir port [amqp flags…]
  local dir=$1 port=$2; shift 2
  AUDITLOG_LOG=warn,lapin::channel=off "$binary" auditor --auditor-addr "127.0.0.1:$port" --data-dir "$dir" "$@" >/dev/null &
  pids+=($!)
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "the auditor did not start" >&2; exit 1
}

http_port=$(free_port); amqp_port=$(free_port)
start_auditor "$work/http" "$http_port"
start_auditor "$work/amqp" "$amqp_port" --amqp-url "$amqp_url" --amqp-exchange "$tag-ex" \
  --amqp-queue "$tag-q" --amqp-dead-letter-queue "$tag-q.dlq" --amqp-queue-type classic
token=$("$binary" token --data-dir "$work/http" --subject bench --role service --ttl 1h)
url="http://127.0.0.1:$http_port"

results=()
for kind in http amqp; do
  results+=("$(cd sdks/node && node bench/emit.mjs "$kind" "$events" "$url" "$token" "$amqp_url" "$tag-ex" "$tag-q")")
  for flavour in sync async; do
    results+=("$(cd sdks/python && "../../$python" bench/emit.py "$flavour" "$kind" "$events" "$url" "$token" "$amqp_url" "$tag-ex" "$tag-q")")
  done
done
rust_embedded=$("$binary" bench ingest --events "$events" --producers 1 --json)
rust_amqp=$("$binary" bench ingest --events "$events" --producers 1 --amqp-url "$amqp_url" --json)

printf '%s\n' "${results[@]}" > "$work/sdk.ndjson"
printf '%s\n' "$rust_embedded" > "$work/rust-embedded.json"
printf '%s\n' "$rust_amqp" > "$work/rust-amqp.json"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
rows = [json.loads(l) for l in open(f"{work}/sdk.ndjson") if l.strip()]
for name in ("rust-embedded.json", "rust-amqp.json"):
    d = json.load(open(f"{work}/{name}"))
    rows.append({"sdk": "rust", "transport": d["transport"], "emit_p50_ns": d["emit_p50_ns"], "emit_p99_ns": d["emit_p99_ns"],
                 "events_per_s": round(d["emitted_per_sec"]), "stored_per_s": round(d["stored_per_sec"])})
print("events/s: SDKs, emitted until close() returned (every event confirmed by the auditor or the broker);")
print("Rust, emitted/s and stored/s as `auditlog bench ingest` reports them.")
print(f"{'sdk':<16}{'transport':<10}{'emit p50 ns':>12}{'emit p99 ns':>12}{'events/s':>12}{'stored/s':>10}")
for r in rows:
    print(f"{r['sdk']:<16}{r['transport']:<10}{r['emit_p50_ns']:>12}{r['emit_p99_ns']:>12}{r['events_per_s']:>12}{str(r.get('stored_per_s', '')):>10}")
PY
