#!/usr/bin/env bash
# Reproduces the publish figures of bench/RESULTS.md: starts a local cluster of N nodes
# (deploy/local-cluster.sh, data in a temp dir), runs evbus-bench publish for each workload
# RUNS times, prints one JSON line per run (with the workload) and the RSS of every node, stops
# the cluster. Usage: bench/run-publish.sh [-n NODES] [-r RUNS] [-d SECONDS] [-p BASE_PORT]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
nodes=3 runs=3 dur=10 base=17800
while getopts "n:r:d:p:" o; do
    case $o in
    n) nodes=$OPTARG ;; r) runs=$OPTARG ;; d) dur=$OPTARG ;; p) base=$OPTARG ;;
    *) echo "usage: $0 [-n NODES] [-r RUNS] [-d SECONDS] [-p BASE_PORT]" >&2; exit 2 ;;
    esac
done
bench=${EVBUS_BENCH:-$top/build/bench/evbus-bench}
dir=$(mktemp -d /tmp/evbus-bench-XXXXXX)
trap '"$top/deploy/local-cluster.sh" stop -d "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
servers=$("$top/deploy/local-cluster.sh" start -n "$nodes" -d "$dir" -p "$base" | tail -n 1)
# Workloads: name connections batch inflight size
workloads=(
    "sync-256 1 1 1 256"
    "pipelined-256 16 100 2 256"
    "sync-4k 1 1 1 4096"
    "pipelined-4k 16 100 2 4096"
)
for w in "${workloads[@]}"; do
    read -r name conns batch inflight size <<<"$w"
    for ((r = 1; r <= runs; r++)); do
        out=$("$bench" publish --servers "$servers" --bus "$name" --create-bus \
            --connections "$conns" --batch "$batch" --inflight "$inflight" --size "$size" \
            --duration "$dur" --json)
        echo "{\"workload\":\"$name\",\"nodes\":$nodes,\"run\":$r,\"result\":$out}"
    done
done
for ((i = 1; i <= nodes; i++)); do
    pid=$(cat "$dir/node$i.pid")
    echo "{\"node\":$i,\"rss_kb\":$(ps -o rss= -p "$pid" | tr -d ' ')}"
done
