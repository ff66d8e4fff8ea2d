#!/usr/bin/env bash
# One command from a fresh Debian 12 to a running local evbus cluster: installs what is missing,
# builds, then runs three evbusd nodes on 127.0.0.1 in the foreground, each line of their logs
# prefixed with [nodeI]. It waits for a leader, creates the bus `default` and prints what to try.
# Ctrl-C stops the nodes cleanly (SIGTERM, then SIGKILL after 15 s). Run it again to restart the
# cluster on its data.
#
#   EVBUS_DATA_DIR       data root (default ./evbus-data, relative to the repository root):
#                        nodeI/ per node, plus cluster.env and nodeI.pid as local-cluster.sh keeps
#   EVBUS_BASE_PORT      node I: client port BASE+2(I-1), Raft port the one after (default 7070)
#   EVBUS_NODES          cluster size (default 3; 1 when this evbusd has no --bootstrap)
#   EVBUS_START_TIMEOUT  seconds to wait for a leader (default 60)
# Other EVBUS_* settings reach every node (e.g. EVBUS_LOG_LEVEL=debug), and so do flags after
# `--`:  deploy/run.sh -- --log-level debug
# While it runs, deploy/local-cluster.sh works on the same cluster from another terminal:
#   deploy/local-cluster.sh status -d evbus-data    (kill I, restart I: try a failover)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" >/dev/null

[ "${1:-}" = "--" ] && shift

PROG=run.sh
# shellcheck source=deploy/local-cluster.sh
. "$top/deploy/local-cluster.sh"
EXTRA_ARGS=("$@")

DIR=${EVBUS_DATA_DIR:-evbus-data}
BASE_PORT=${EVBUS_BASE_PORT:-7070}
NODES=${EVBUS_NODES:-3}
TIMEOUT=${EVBUS_START_TIMEOUT:-60}
for v in "$BASE_PORT" "$NODES" "$TIMEOUT"; do
    is_uint "$v" || die "'$v' is not a number (EVBUS_BASE_PORT, EVBUS_NODES, EVBUS_START_TIMEOUT)"
done
if [ "$NODES" -lt 1 ] || [ "$NODES" -gt 99 ]; then die "EVBUS_NODES must be 1..99"; fi
if [ "$BASE_PORT" -lt 1 ] || [ $((BASE_PORT + 2 * NODES - 1)) -gt 65535 ]; then
    die "ports $BASE_PORT..$((BASE_PORT + 2 * NODES - 1)) are out of range"
fi
if [ "$NODES" -gt 1 ] && ! have_bootstrap; then
    note "this evbusd has no --bootstrap flag yet: starting a single node instead of $NODES"
    NODES=1
fi
check_binary
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)

# The first start fixes the membership: with other counts or ports the nodes would disagree.
if [ -f "$DIR/cluster.env" ]; then
    want_n=$NODES want_p=$BASE_PORT
    load_layout
    if [ "$want_n" != "$NODES" ] || [ "$want_p" != "$BASE_PORT" ]; then
        die "$DIR holds a $NODES-node cluster at base port $BASE_PORT from an earlier run; set" \
            "EVBUS_NODES=$NODES EVBUS_BASE_PORT=$BASE_PORT, choose another EVBUS_DATA_DIR, or remove $DIR"
    fi
elif [ -d "$DIR/raft" ]; then
    note "$DIR/raft and $DIR/rocksdb are from the single node of an older run.sh; the cluster" \
        "keeps its nodes in $DIR/nodeI and leaves them alone"
fi
for ((i = 1; i <= NODES; i++)); do
    if pid=$(node_pid "$i"); then
        die "node $i of an earlier run is still running (pid $pid);" \
            "stop it with: deploy/local-cluster.sh stop -d $DIR"
    fi
done
for ((i = 1; i <= NODES; i++)); do check_ports_free "$i"; done
[ -f "$DIR/cluster.env" ] || write_layout

prefix() {
    local line
    # Stay alive through Ctrl-C: the lines the nodes log while stopping come after it.
    trap '' INT TERM HUP
    while IFS= read -r line || [ -n "$line" ]; do
        printf '[node%s] %s\n' "$1" "$line"
    done >&2
}

ARMED=0 SLEEP_PID="" BY_SIGNAL=0
PREFIXERS=()
on_exit() {
    local rc=$? deadline p
    trap '' INT TERM HUP
    if [ -n "$SLEEP_PID" ]; then kill "$SLEEP_PID" 2>/dev/null || true; fi
    if [ "$ARMED" = 1 ]; then
        note "stopping the nodes"
        local -a all=()
        for ((i = 1; i <= NODES; i++)); do all+=("$i"); done
        stop_nodes 15 "${all[@]}" || rc=1
        # Let the prefixers print the nodes' last lines before the prompt comes back.
        deadline=$((SECONDS + 5))
        for p in "${PREFIXERS[@]}"; do
            while pid_running "$p" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        done
        [ "$BY_SIGNAL" = 1 ] && [ "$rc" = 130 ] && rc=0
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'BY_SIGNAL=1; exit 130' INT TERM HUP

ARMED=1
STARTED=()
for ((i = 1; i <= NODES; i++)); do
    exec {fd}> >(prefix "$i")
    PREFIXERS+=("$!")
    start_node "$i" "$fd"
    exec {fd}>&-
done

servers=$(servers_line)
ctl=("$EVBUSCTL" --servers "$servers")
deadline=$((SECONDS + TIMEOUT))
leader=""
while :; do
    for entry in "${STARTED[@]}"; do
        pid_running "${entry#*:}" || die "node ${entry%%:*} exited during startup (its log is above)"
    done
    if out=$("${ctl[@]}" --timeout 2000 cluster status 2>/dev/null) &&
        [[ $out == "leader: node "* ]]; then
        leader=${out#leader: node }
        leader=${leader%% *}
        break
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "no leader after ${TIMEOUT}s (EVBUS_START_TIMEOUT)"
    sleep 0.5
done

deadline=$((SECONDS + 30))
while :; do
    if out=$("${ctl[@]}" --timeout 5000 bus create default 2>&1); then
        note "$out"
        break
    elif [[ $out == *EVBUS_EEXIST* ]]; then
        note "bus default already exists"
        break
    elif [ "$SECONDS" -ge "$deadline" ]; then
        note "could not create the bus default: $out"
        break
    fi
    sleep 0.5
done

cat <<MSG

evbus: $NODES-node cluster on 127.0.0.1, leader node $leader, data in $DIR
servers: $servers
Try, from another terminal:
  export EVBUS_SERVERS=$servers
  $top/build/src/evbusctl bus describe default
  $top/build/src/evbusctl publish default --source shop --detail-type OrderPlaced --detail '{"id":42}'
  $top/build/src/evbusctl read default --partition 0    # the partition publish printed
Stop with Ctrl-C.

MSG

# Foreground until Ctrl-C. Nodes may go down and come back (deploy/local-cluster.sh kill/restart);
# the pid files say which run. Ctrl-C interrupts the wait at once and the EXIT trap stops them.
was_up=()
for ((i = 1; i <= NODES; i++)); do was_up[i]=1; done
while :; do
    running=0
    for ((i = 1; i <= NODES; i++)); do
        if pid=$(node_pid "$i"); then
            running=$((running + 1))
            [ "${was_up[$i]}" = 1 ] || note "node $i is running again (pid $pid)"
            was_up[i]=1
        else
            [ "${was_up[$i]}" = 0 ] || note "node $i is down"
            was_up[i]=0
        fi
    done
    [ "$running" -gt 0 ] || die "every node has exited"
    sleep 1 &
    SLEEP_PID=$!
    wait "$SLEEP_PID" || true
    SLEEP_PID=""
done
