#!/usr/bin/env bash
# The webhook's watch sync against a real API server (issue 22: "the watch sync no slower than
# the API server's list"). Side by side, best of RUNS each, interleaved:
#   - the API server's list: every NetworkPolicy of the cluster in pages of 500 (the page size
#     of kube-rs's watcher and of `kubectl get`), over one keep-alive HTTPS connection, each
#     body read whole and dropped: what serving the list costs the API server, plus the
#     transfer, and no client-side decoding;
#   - the same list from the API server's watch cache, in one response (resourceVersion=0 and
#     no limit: how client-go's informers list first, and how the webhook lists);
#   - the webhook: from its start to `/readyz` answering 200, which it does once its watches
#     have listed Namespaces, NetworkPolicies and EgressIntents and indexed what they read;
#     with the CPU the webhook took and its peak RSS, run as the chart runs it
#     (MIMALLOC_PURGE_DELAY=1 MIMALLOC_ALLOW_THP=0).
# The cluster gets NAMESPACES namespaces (labelled portcullis-bench=watch-sync) of POLICIES
# NetworkPolicies each, created once and kept for later runs (delete them with
# `kubectl delete ns -l portcullis-bench=watch-sync`), and the EgressIntent CRD the webhook
# watches. Use a cluster made for testing, such as the loopback control plane of
# docs/operations.md ("Building a kube-apiserver on a machine without a cluster").
#
#   PORTCULLIS_E2E_KUBECONFIG=KUBECONFIG webhook/benches/watch-sync.sh [NAMESPACES] [POLICIES] [RUNS] [BINARY...]
#
# Defaults: 1,000 namespaces x 100 policies (100,000, the issue's memory and startup figure),
# 3 runs, target/release/portcullis-webhook (cargo build --release -p portcullis-webhook).
# Several binaries (a change and its base) are run in the same turns, after the same list.
set -euo pipefail
cd "$(dirname "$0")/../.."
namespaces=${1:-1000}
policies=${2:-100}
runs=${3:-3}
bins=("${@:4}")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/portcullis-webhook)
fail() { echo "watch-sync: $*" >&2; exit 1; }
[ -n "${PORTCULLIS_E2E_KUBECONFIG:-}" ] || fail "set PORTCULLIS_E2E_KUBECONFIG to a test cluster's kubeconfig"
for bin in "${bins[@]}"; do
  [ -x "$bin" ] || fail "$bin is missing; cargo build --release -p portcullis-webhook"
done
for tool in kubectl curl openssl python3; do
  command -v "$tool" >/dev/null || fail "$tool is required"
done
export KUBECONFIG=$PORTCULLIS_E2E_KUBECONFIG
tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# Where and how to reach the API server, from the kubeconfig (token or client certificate).
kubectl config view --raw --minify -o json > "$tmp/kubeconfig.json"
python3 - "$tmp" <<'PY'
import base64, json, sys
tmp = sys.argv[1]
k = json.load(open(f"{tmp}/kubeconfig.json"))
cluster, user = k["clusters"][0]["cluster"], k["users"][0]["user"]
def material(name, data_key, file_key, source):
    if data_key in source:
        open(f"{tmp}/{name}", "wb").write(base64.b64decode(source[data_key]))
    elif file_key in source:
        open(f"{tmp}/{name}", "wb").write(open(source[file_key], "rb").read())
material("ca.pem", "certificate-authority-data", "certificate-authority", cluster)
material("client.pem", "client-certificate-data", "client-certificate", user)
material("client.key", "client-key-data", "client-key", user)
json.dump({"server": cluster["server"], "token": user.get("token", "")}, open(f"{tmp}/access.json", "w"))
PY
# One way to connect, for the loader and the list below (imported from $tmp).
cat > "$tmp/apiserver.py" <<'PY'
import http.client, json, os, ssl, urllib.parse

def connect(tmp):
    """A keep-alive connection to the API server and the headers that authenticate on it."""
    access = json.load(open(f"{tmp}/access.json"))
    url = urllib.parse.urlparse(access["server"])
    context = ssl.create_default_context(cafile=f"{tmp}/ca.pem")
    if os.path.exists(f"{tmp}/client.pem"):
        context.load_cert_chain(f"{tmp}/client.pem", f"{tmp}/client.key")
    headers = {"Authorization": "Bearer " + access["token"]} if access["token"] else {}
    return http.client.HTTPSConnection(url.hostname, url.port or 443, context=context), headers
PY

kubectl apply -f charts/portcullis/crds/egressintents.yaml >/dev/null
have=$(kubectl get ns -l portcullis-bench=watch-sync -o name | wc -l)
if [ "$have" -lt "$namespaces" ]; then
  echo "creating $namespaces namespaces x $policies NetworkPolicies (once; kept for later runs)..."
  python3 - "$tmp" "$namespaces" "$policies" <<'PY'
import json, sys, threading
tmp, namespaces, policies = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, tmp)
from apiserver import connect

def post(conn, headers, path, body):
    conn.request("POST", path, json.dumps(body), headers)
    response = conn.getresponse()
    text = response.read()
    if response.status not in (201, 409):
        sys.exit(f"watch-sync: POST {path}: {response.status} {text[:300]!r}")

def policy(ns, i):
    # The shapes of real per-service policies: a selector, ingress from the namespace's pods,
    # egress to DNS and to one service on one port.
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": f"svc-{i:03d}", "namespace": ns, "labels": {"portcullis-bench": "watch-sync"}},
        "spec": {
            "podSelector": {"matchLabels": {"app": f"svc-{i:03d}"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 8080, "protocol": "TCP"}]}],
            "egress": [
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                         "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                 "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                {"to": [{"podSelector": {"matchLabels": {"app": f"svc-{(i + 1) % policies:03d}"}}}],
                 "ports": [{"port": 8080, "protocol": "TCP"}]},
            ],
        },
    }

def work(part, parts):
    conn, headers = connect(tmp)
    headers["Content-Type"] = "application/json"
    for n in range(part, namespaces, parts):
        ns = f"bench-sync-{n:05d}"
        post(conn, headers, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": ns, "labels": {"portcullis-bench": "watch-sync"}}})
        for i in range(policies):
            post(conn, headers, f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", policy(ns, i))

threads = [threading.Thread(target=work, args=(p, 4)) for p in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
PY
fi
total=$(kubectl get --raw "/apis/networking.k8s.io/v1/networkpolicies?limit=1" | python3 -c \
  'import json,sys; l=json.load(sys.stdin); print(len(l["items"]) + l["metadata"].get("remainingItemCount", 0))')
[ "$total" -gt 0 ] || fail "the cluster holds no NetworkPolicy to list"

# The API server's list, bodies read and dropped, one connection: `list_once pages` lists in
# pages of 500 from etcd (kubectl's and kube-rs's watcher's list), `list_once cache` asks for
# the list from the watch cache in one response (resourceVersion=0, no limit: client-go's
# informers' first list, and the webhook's).
list_once() {
  python3 - "$tmp" "$1" <<'PY'
import re, sys, time, urllib.parse
tmp, mode = sys.argv[1], sys.argv[2]
sys.path.insert(0, tmp)
from apiserver import connect
start = time.perf_counter()
conn, headers = connect(tmp)
headers["Accept"] = "application/json"
token, pages, size = "", 0, 0
while True:
    query = {"limit": "500"} if mode == "pages" else {"resourceVersion": "0"}
    if token:
        query["continue"] = token
    conn.request("GET", "/apis/networking.k8s.io/v1/networkpolicies?" + urllib.parse.urlencode(query), headers=headers)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        sys.exit(f"watch-sync: list: {response.status} {body[:300]!r}")
    pages, size = pages + 1, size + len(body)
    # The list's metadata comes first: only its head is read for the next page's token.
    found = re.search(rb'"continue":"([^"]*)"', body[:2048])
    token = found.group(1).decode() if found else ""
    if not token:
        break
print(f"{time.perf_counter() - start:.3f} {pages} {size}")
PY
}

# The webhook, out of the cluster as the e2e suite runs it: the kubeconfig's identity, a
# self-signed serving certificate, every other setting at its default.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/tls.key" -out "$tmp/tls.crt" -days 1 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" 2>/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
sync_once() {
  local bin=$1 https ops start ready code peak_kb rss_kb cpu
  https=$(port)
  ops=$(port)
  start=$EPOCHREALTIME
  # As the chart runs it: mimalloc gives freed pages back at once and asks for no huge pages
  # (charts/portcullis).
  MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:-1} MIMALLOC_ALLOW_THP=${MIMALLOC_ALLOW_THP:-0} "$bin" serve --listen "127.0.0.1:$https" --metrics-listen "127.0.0.1:$ops" \
    --tls-cert "$tmp/tls.crt" --tls-key "$tmp/tls.key" --controller false --log-format text >"$tmp/log" 2>&1 &
  pid=$!
  ready=
  for _ in $(seq 12000); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ops/readyz" || true)
    if [ "$code" = 200 ]; then
      ready=$EPOCHREALTIME
      break
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/log" >&2; fail "the webhook exited before it was ready"; }
    sleep 0.01
  done
  [ -n "$ready" ] || { cat "$tmp/log" >&2; fail "the webhook was not ready within two minutes"; }
  # The peak so far: the sync's, since nothing else has happened yet; and the CPU it took.
  peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$pid/stat")
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  echo "$(awk "BEGIN{printf \"%.3f\", $ready - $start}") $((peak_kb / 1024)) $cpu $((rss_kb / 1024))"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "API server: $(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')," \
  "$total NetworkPolicies in the cluster; best of $runs, interleaved"
best_list=""
best_cache=""
declare -A best_sync peak
for _ in $(seq "$runs"); do
  read -r t pages bytes < <(list_once pages)
  if [ -z "$best_list" ] || awk "BEGIN{exit !($t < $best_list)}"; then best_list=$t; fi
  echo "  run: list ${t} s ($pages pages, $((bytes / 1000000)) MB)"
  read -r t pages bytes < <(list_once cache)
  if [ -z "$best_cache" ] || awk "BEGIN{exit !($t < $best_cache)}"; then best_cache=$t; fi
  echo "       list from the watch cache ${t} s ($pages response, $((bytes / 1000000)) MB)"
  for bin in "${bins[@]}"; do
    read -r s rss cpu now < <(sync_once "$bin")
    if [ -z "${best_sync[$bin]:-}" ] || awk "BEGIN{exit !($s < ${best_sync[$bin]})}"; then best_sync[$bin]=$s; fi
    [ "$rss" -gt "${peak[$bin]:-0}" ] && peak[$bin]=$rss
    echo "    $bin: ready in ${s} s (CPU ${cpu} s, peak RSS ${rss} MB, ${now} MB when ready)"
  done
done
printf "%-44s %8s\n" "" seconds
printf "%-44s %8s\n" "the API server's list (pages of 500)" "$best_list"
printf "%-44s %8s\n" "the API server's list from its watch cache" "$best_cache"
for bin in "${bins[@]}"; do
  printf "%-44s %8s   %.2fx the paged list, %.2fx the cached list, peak RSS %d MB\n" "$bin, start to ready" \
    "${best_sync[$bin]}" "$(awk "BEGIN{print ${best_sync[$bin]} / $best_list}")" \
    "$(awk "BEGIN{print ${best_sync[$bin]} / $best_cache}")" "${peak[$bin]}"
done
