#!/usr/bin/env bash
# Benchmark: the pre-commit hook's run (`portcullis lint --context . --allow-empty FILE`) on a
# GitOps-shaped repository of 11,000 files (1,000 namespaces, one object per file, in git),
# one changed file reported. Best wall time of N runs and the largest peak RSS, on every core
# this machine has, and on one. BASELINE=/path/to/an/older/portcullis adds its figures in the
# same run.
#
#   linter/benches/precommit-context.sh [RUNS]      (results go in docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-7}
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time is required (apt-get install -y time)" >&2; exit 1; }
command -v git >/dev/null || { echo "bench: git is required" >&2; exit 1; }
command -v taskset >/dev/null || { echo "bench: taskset (util-linux) is required" >&2; exit 1; }

cargo build --quiet --release -p portcullis-linter --example gen-corpus
# The binary as shipped: profile `dist` (Cargo.toml).
cargo build --quiet --profile dist -p portcullis-linter --bin portcullis
bin=$PWD/target/dist/portcullis
work=$PWD/target/bench
repo=$work/gitops-1000
mkdir -p "$work"
if [ ! -d "$repo/.git" ]; then
  rm -rf "$repo"
  target/release/examples/gen-corpus "$repo" 1000 --split
  git -C "$repo" init -q
  git -C "$repo" add -A
  git -C "$repo" -c user.name=bench -c user.email=bench@example.com commit -q -m corpus
fi
changed=ns-00001/02-deployment-api.yaml

# shellcheck source=linter/benches/measure.sh
. linter/benches/measure.sh
# One line of the table: LABEL, CPUS, then the command, run in the repository.
row() {
  local label=$1 t rss
  read -r t rss < <(cd "$repo" && CPUS=$2 measure "${@:3}")
  printf "%-34s %8s s %6d MB\n" "$label" "$t" "$((rss / 1024))"
}

hook=(lint --context . --allow-empty "$changed" --format json --fail-on never)
all="0-$(($(nproc) - 1))"
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "portcullis $($bin --version | cut -d' ' -f2) (profile dist), $(git -C "$repo" ls-files | wc -l) files in git, best of $runs runs"
echo
row "portcullis, every core" "$all" "$bin" "${hook[@]}"
row "portcullis, one core" 0 "$bin" "${hook[@]}"
if [ -n "${BASELINE:-}" ]; then
  row "baseline, every core" "$all" "$BASELINE" "${hook[@]}"
  row "baseline, one core" 0 "$BASELINE" "${hook[@]}"
fi
