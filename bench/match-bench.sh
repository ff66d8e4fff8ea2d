#!/bin/sh
# Runs `evbus-bench match` over citylots-shaped events for every operator kind and rule count,
# and prints one Markdown table row per run (the figures of bench/RESULTS.md, "Matching").
#
#   bench/match-bench.sh [BUILD_DIR [WORK_DIR]]     (defaults: build-rel, /tmp/evbus-match-bench)
#
# Environment: EVENTS (count, default 50000), KINDS, COUNTS, RUNS (best of, default 3),
# SECONDS_PER_RUN (default 2). Each run is timed on the matching loop only; the events are
# loaded into memory first. Numbers are the best of RUNS by CPU time of the matching thread
# (on a shared machine, wall time also counts other processes); wall-clock events/s is shown
# beside it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build-rel}
work=${2:-/tmp/evbus-match-bench}
bench=$build/bench/evbus-bench
events=${EVENTS:-50000}
kinds=${KINDS:-"exact prefix suffix equals-ignore-case numeric numeric-coords anything-but anything-but-exact wildcard exists"}
counts=${COUNTS:-"1 100 1000 10000"}
runs=${RUNS:-3}
secs=${SECONDS_PER_RUN:-2}
mkdir -p "$work"
ev=$work/citylots-$events.jsonl.gz
[ -f "$ev" ] || python3 "$here/gen-citylots.py" events --count "$events" --seed 1 --out "$ev"
# Decompressed once, so gunzip is not part of any run's load.
[ -f "$work/events.jsonl" ] || gzip -dc "$ev" >"$work/events.jsonl"

field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[sys.argv[1]])' "$1"; }

echo "| kind | rules | events/s (CPU) | events/s (wall) | MB/s (CPU) | matches/event | matcher bytes |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for kind in $kinds; do
    for n in $counts; do
        rules=$work/$kind-$n.jsonl
        [ -f "$rules" ] || python3 "$here/gen-citylots.py" rules --kind "$kind" --count "$n" \
            --seed 2 --out "$rules"
        est=$("$bench" match --rules "$rules" --events "$work/events.jsonl" --json |
            field events_per_cpu_s)
        passes=$(python3 -c "print(max(1, round($secs * $est / $events)))")
        best=""
        for _ in $(seq "$runs"); do
            out=$("$bench" match --rules "$rules" --events "$work/events.jsonl" \
                --passes "$passes" --json)
            cpu=$(echo "$out" | field events_per_cpu_s)
            if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $cpu > $(echo "$best" | field events_per_cpu_s) else 1)"; then
                best=$out
            fi
        done
        echo "$best" | python3 -c '
import json, sys
d = json.load(sys.stdin)
k, n = sys.argv[1], sys.argv[2]
mb = d["event_bytes"] / d["events"] * d["events_per_cpu_s"] / 1e6
per = d["total_matches"] / (d["events"] * d["passes"])
print("| %s | %s | %s | %s | %.0f | %.2f | %s |" % (k, n, format(int(d["events_per_cpu_s"]), ","),
      format(int(d["events_per_s"]), ","), mb, per, format(d["matcher_bytes"], ",")))
' "$kind" "$n"
    done
done
