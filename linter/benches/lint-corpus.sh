#!/usr/bin/env bash
# Benchmark: `portcullis lint` end to end on the generated corpus (1,000 namespaces x 11 objects),
# pinned to one core, with peak memory; the same corpus at 250..2,000 namespaces to show linear
# scaling; the target corpus on every core against rapidyaml parsing the same bytes; and checkov
# on the same corpus in the same run, with the ratio.
#
#   linter/benches/lint-corpus.sh [RUNS]      (results go in docs/benchmarks.md)
#   CHECKOV=0 linter/benches/lint-corpus.sh   (skips checkov, the slow part)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
command -v taskset >/dev/null || { echo "bench: taskset (util-linux) is required" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time is required (apt-get install -y time)" >&2; exit 1; }

cargo build --quiet --release -p portcullis-linter --example gen-corpus
# The binary as shipped: profile `dist` (Cargo.toml).
cargo build --quiet --profile dist -p portcullis-linter --bin portcullis
bin=target/dist/portcullis
work=target/bench
mkdir -p "$work"

# shellcheck source=linter/benches/measure.sh
. linter/benches/measure.sh

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "portcullis $($bin --version | cut -d' ' -f2) (profile dist), best of $runs runs, pinned to CPU 0"
echo
printf "%-12s %8s %6s %10s %14s %10s\n" namespaces objects MB seconds objects/s "peak RSS"
for n in 250 500 1000 2000; do
  dir="$work/corpus-$n"
  [ -d "$dir" ] || target/release/examples/gen-corpus "$dir" "$n"
  objects=$((n * 11))
  mb=$(du -sm "$dir" | cut -f1)
  read -r t rss < <(measure "$bin" lint "$dir" --format json --fail-on never)
  printf "%-12s %8d %6s %10s %14.0f %8d MB\n" "$n" "$objects" "$mb" "$t" "$(awk "BEGIN{print $objects/$t}")" "$((rss / 1024))"
done

all_cpus="0-$(($(nproc) - 1))"
ryvenv=target/tools/rapidyaml-venv
if [ ! -x "$ryvenv/bin/python" ] || ! "$ryvenv/bin/python" -c "import ryml" 2>/dev/null; then
  echo; echo "installing rapidyaml into $ryvenv (PyPI)..."
  python3 -m venv "$ryvenv"
  "$ryvenv/bin/pip" install --quiet rapidyaml
fi
dir="$work/corpus-1000"
read -r one _ < <(measure "$bin" lint "$dir" --format json --fail-on never)
read -r all rss < <(CPUS=$all_cpus measure "$bin" lint "$dir" --format json --fail-on never)
read -r ry _ bytes < <(taskset -c 0 "$ryvenv/bin/python" linter/benches/rapidyaml-parse.py "$dir" "$runs")
echo
echo "1,000 namespaces ($((bytes / 1000)) kB): portcullis lint end to end on every core ($all_cpus) against"
echo "rapidyaml $("$ryvenv/bin/pip" show rapidyaml | awk '/^Version/{print $2}') parsing the same bytes in memory (no start-up, no reading; one core)"
printf "%-34s %10s %10s\n" "" seconds "vs parse"
printf "%-34s %10s %10s\n" "rapidyaml, parse only" "$ry" "1.00"
printf "%-34s %10s %10.2f\n" "portcullis lint, CPU 0" "$one" "$(awk "BEGIN{print $one/$ry}")"
printf "%-34s %10s %10.2f   peak RSS %d MB\n" "portcullis lint, CPUs $all_cpus" "$all" "$(awk "BEGIN{print $all/$ry}")" "$((rss / 1024))"

[ "${CHECKOV:-1}" = 0 ] && exit 0
venv=target/tools/checkov-venv
if [ ! -x "$venv/bin/checkov" ]; then
  echo; echo "installing checkov into $venv (PyPI)..."
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet checkov
fi
# checkov grows superlinearly on this corpus (past 28 minutes and 10 GB RSS on 1,000 namespaces
# without finishing, one core): compare on sizes it can finish, and give the full corpus a budget.
budget=${CHECKOV_BUDGET:-600}
echo
echo "checkov $("$venv/bin/checkov" --version), same corpora, one run each, pinned to CPU 0 (budget ${budget}s):"
printf "%-12s %8s %12s %14s %10s %9s\n" namespaces objects "checkov s" "checkov RSS" "portcullis s" ratio
for n in 100 250 1000; do
  dir="$work/corpus-$n"
  [ -d "$dir" ] || target/release/examples/gen-corpus "$dir" "$n"
  read -r pt _ < <(measure "$bin" lint "$dir" --format json --fail-on never)
  set +e
  /usr/bin/time -f "%e %M" -o "$work/time" timeout "$budget" taskset -c 0 "$venv/bin/checkov" -d "$dir" \
    --framework kubernetes --skip-download --quiet --compact -o json >/dev/null 2>&1
  code=$?
  set -e
  if [ "$code" -eq 124 ]; then
    printf "%-12s %8d %12s %14s %10s %9s\n" "$n" $((n * 11)) ">$budget" "-" "$pt" "> $(awk "BEGIN{printf \"%.0f\", $budget/$pt}")x"
  else
    read -r ct cm < <(tail -1 "$work/time")
    printf "%-12s %8d %12s %11d MB %10s %8.0fx\n" "$n" $((n * 11)) "$ct" "$((cm / 1024))" "$pt" "$(awk "BEGIN{print $ct/$pt}")"
  fi
done
