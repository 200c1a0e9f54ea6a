#!/usr/bin/env bash
# The webhook's memory envelope: peak RSS (VmHWM) of the real binary in dev mode under N
# concurrent UPDATE reviews of one Deployment, for two shapes of a large object. Loopback only.
#   webhook/benches/review-envelope.sh [BINARY] [EXTRA SERVE FLAGS...]
# Default binary: target/release/portcullis-webhook (cargo build --release -p portcullis-webhook).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/portcullis-webhook}; shift || true
[ -x "$BIN" ] || { echo "review-envelope: $BIN is missing; cargo build --release -p portcullis-webhook" >&2; exit 1; }
command -v curl >/dev/null || { echo "review-envelope: curl is required" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp" <<'PY'
import copy, json, sys
out = sys.argv[1]
base = json.load(open('testcases/admission/validate/deployment-create-no-default-deny.json'))
def write(name, edit):
    r = copy.deepcopy(base); obj = r['request']['object']; edit(obj)
    old = copy.deepcopy(obj); old['spec']['replicas'] = 1
    r['request'].update(operation='UPDATE', oldObject=old)
    json.dump(r, open(f'{out}/{name}.json', 'w'))
write('annotations', lambda o: o['metadata'].update(annotations={f'example.com/note-{i}': 'x' * 1000 for i in range(1200)}))
def spec(o):
    c = o['spec']['template']['spec']['containers'][0]; cs = []
    for i in range(40):
        cc = copy.deepcopy(c); cc['name'] = f'c{i}'
        cc['env'] = [{'name': f'VAR_{j}', 'value': 'v' * 40} for j in range(400)]
        cc['ports'] = [{'containerPort': 1000 + j} for j in range(20)]
        cs.append(cc)
    o['spec']['template']['spec']['containers'] = cs
write('spec', spec)
PY
for shape in annotations spec; do
  for n in 1 8; do
    "$BIN" serve --dev --state testcases/admission/state --listen 127.0.0.1:28443 --metrics-listen 127.0.0.1:29090 \
      --dev-ca-out "$tmp/ca.pem" --review-timeout-ms 60000 "$@" >"$tmp/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -s 127.0.0.1:29090/readyz >/dev/null && break; sleep 0.1; done
    base=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
    codes=$(for _ in $(seq $n); do
      curl -s -o /dev/null -w '%{http_code}/%{time_total}s ' --cacert "$tmp/ca.pem" -H 'Content-Type: application/json' \
        --data-binary @"$tmp/$shape.json" https://localhost:28443/validate &
    done; wait)
    peak=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
    kill $pid; wait $pid 2>/dev/null || true
    echo "shape=$shape body=$(stat -c %s "$tmp/$shape.json") concurrent=$n idle_kib=$base peak_kib=$peak answers: $codes"
  done
done
