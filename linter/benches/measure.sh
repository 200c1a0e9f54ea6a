# Sourced by the benchmark scripts: `measure CMD...` prints the best wall time (s) of $runs runs
# of CMD, pinned to the CPUs in $CPUS (default 0), and the largest peak RSS (KB), as "TIME RSS".
# $work is where /usr/bin/time writes (an absolute path when the caller changes directory).
# The time is taken around the whole `time taskset CMD` (microseconds, so it includes their
# start-up: conservative); /usr/bin/time's own figure has only 10 ms resolution.
measure() {
  local best="" rss=0 t0 t1 t m
  for _ in $(seq "$runs"); do
    t0=$EPOCHREALTIME
    /usr/bin/time -f "%M" -o "$work/time" taskset -c "${CPUS:-0}" "$@" >/dev/null 2>&1 || true
    t1=$EPOCHREALTIME
    t=$(awk "BEGIN{printf \"%.4f\", $t1 - $t0}")
    read -r m < "$work/time"
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; fi
    [ "$m" -gt "$rss" ] && rss=$m
  done
  echo "$best $rss"
}
