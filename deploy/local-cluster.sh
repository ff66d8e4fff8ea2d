#!/usr/bin/env bash
# Runs an N-node evbus cluster on 127.0.0.1 in the background, for development and for trying
# failures by hand: kill a node, watch the leader move, restart it on its data.
#
#   deploy/local-cluster.sh start   [-n N] [-p BASE_PORT] [-d DIR] [-t SECONDS]
#   deploy/local-cluster.sh stop    [-d DIR] [-t SECONDS]
#   deploy/local-cluster.sh status  [-d DIR]
#   deploy/local-cluster.sh kill    I [-d DIR]
#   deploy/local-cluster.sh restart I [-d DIR] [-t SECONDS]
#
# Layout of DIR (default ./evbus-cluster): cluster.env (N and the base port, written by the first
# start so the other subcommands need only -d), and per node I: nodeI/ (data), nodeI.log (stdout
# and stderr, appended across restarts), nodeI.pid. Node I listens for clients on
# 127.0.0.1:BASE+2(I-1) and for Raft on the port after it (base 7070: 7070/7071, 7072/7073, ...).
# Every node gets the same --bootstrap list of all N members; a node uses it on its first start
# only, so restarts pass it too.
#
# start and restart print the client addresses of all nodes, comma-separated, as the last line of
# stdout (everything else goes to stderr):  servers=$(deploy/local-cluster.sh start | tail -n 1)
#
# Safety: a signal only ever goes to a PID read from one of our pid files, and only after
# /proc/PID/cmdline shows an evbusd running with that node's --data-dir (a recycled PID is left
# alone). The binary's file name must therefore contain "evbusd".
#
# EVBUSD and EVBUSCTL override the binaries (default: build/src/ of this repository). EVBUS_*
# settings in the environment reach the nodes (e.g. EVBUS_LOG_LEVEL=debug), except those the
# script sets with flags: node-id, listen, raft-listen, data-dir, bootstrap.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EVBUSD=${EVBUSD:-$top/build/src/evbusd}
EVBUSCTL=${EVBUSCTL:-$top/build/src/evbusctl}
HOST=127.0.0.1

usage() {
    cat <<'USAGE'
usage: deploy/local-cluster.sh start   [-n N] [-p BASE_PORT] [-d DIR] [-t SECONDS]
       deploy/local-cluster.sh stop    [-d DIR] [-t SECONDS]
       deploy/local-cluster.sh status  [-d DIR]
       deploy/local-cluster.sh kill    I [-d DIR]
       deploy/local-cluster.sh restart I [-d DIR] [-t SECONDS]
  -n N          nodes (default 3)            -p BASE_PORT  first client port (default 7070)
  -d DIR        cluster directory (default ./evbus-cluster)
  -t SECONDS    start/restart: wait for the client ports (default 30);
                stop: wait after SIGTERM before SIGKILL (default 15)
USAGE
    exit "${1:-2}"
}
PROG=${PROG:-local-cluster}
EXTRA_ARGS=()
die() {
    echo "$PROG: $*" >&2
    exit 1
}
note() { echo "$PROG: $*" >&2; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]] && [ ${#1} -le 9 ]; }

client_port() { echo $((BASE_PORT + 2 * ($1 - 1))); }
raft_port() { echo $((BASE_PORT + 2 * ($1 - 1) + 1)); }

servers_line() {
    local i out=""
    for ((i = 1; i <= NODES; i++)); do
        out+="${out:+,}$HOST:$(client_port "$i")"
    done
    echo "$out"
}

bootstrap_list() {
    local i out=""
    for ((i = 1; i <= NODES; i++)); do
        out+="${out:+,}$i=$HOST:$(raft_port "$i")/$HOST:$(client_port "$i")"
    done
    echo "$out"
}

have_bootstrap() {
    local help
    help=$("$EVBUSD" --help 2>&1) || true
    [[ $help == *--bootstrap* ]]
}

# The exact arguments of node I; start and restart use the same ones.
node_args() {
    local i=$1
    ARGS=(--node-id "$i" --listen "$HOST:$(client_port "$i")"
          --raft-listen "$HOST:$(raft_port "$i")" --data-dir "$DIR/node$i")
    if [ "$BOOTSTRAP" = 1 ]; then
        ARGS+=(--bootstrap "$(bootstrap_list)")
    fi
}

# Running and not a zombie (a zombie still answers kill -0).
pid_running() {
    local pid=$1 stat
    kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/stat" ]; then
        stat=$(<"/proc/$pid/stat") || return 1
        stat=${stat##*) }
        [ "${stat%% *}" != Z ] || return 1
    fi
    return 0
}

# PID is an evbusd serving node I of this DIR: the file name of its program, or of one of the
# next two arguments (setsid in the instant before its exec, env + interpreter, a wrapper such as
# valgrind), contains evbusd, and its arguments hold --data-dir DIR/nodeI.
is_our_node() {
    local pid=$1 want="$DIR/node$2" a prev="" dir_ok=0 prog_ok=0
    local -a argv=()
    pid_running "$pid" || return 1
    if [ -r "/proc/$pid/cmdline" ]; then
        mapfile -d '' -t argv <"/proc/$pid/cmdline" 2>/dev/null || return 1
    elif command -v ps >/dev/null 2>&1; then
        read -r -a argv <<<"$(ps -o args= -p "$pid" 2>/dev/null)" || return 1
    else
        return 1
    fi
    [ ${#argv[@]} -gt 0 ] || return 1
    for a in "${argv[@]:0:3}"; do
        [[ $a != -* && ${a##*/} == *evbusd* ]] && prog_ok=1
    done
    [ $prog_ok = 1 ] || return 1
    for a in "${argv[@]}"; do
        if [ "$prev" = --data-dir ] && [ "$a" = "$want" ]; then dir_ok=1; fi
        prev=$a
    done
    [ $dir_ok = 1 ]
}

pid_file() { echo "$DIR/node$1.pid"; }

# The PID in node I's pid file, or nothing (no file, or not a number).
read_pid() {
    local f pid=""
    f=$(pid_file "$1")
    [ -f "$f" ] || return 0
    read -r pid <"$f" || true
    if is_uint "$pid" && [ "$pid" -gt 1 ]; then echo "$pid"; fi
}

# Prints node I's PID when it is running, fails otherwise.
node_pid() {
    local pid
    pid=$(read_pid "$1")
    [ -n "$pid" ] && is_our_node "$pid" "$1" && echo "$pid"
}

port_open() {
    local port=$1
    if command -v timeout >/dev/null 2>&1; then
        # shellcheck disable=SC2016 # expanded by the inner bash
        timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$port" 2>/dev/null
    else
        (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null
    fi
}

check_ports_free() {
    local i=$1 port
    for port in "$(client_port "$i")" "$(raft_port "$i")"; do
        if port_open "$port"; then
            die "port $HOST:$port (node $i) is already in use by another process"
        fi
    done
}

load_layout() {
    local f="$DIR/cluster.env" k v
    [ -f "$f" ] || die "no cluster in $DIR (no cluster.env); start one with: $0 start -d $DIR"
    NODES="" BASE_PORT=""
    while IFS='=' read -r k v; do
        case $k in
        NODES) NODES=$v ;;
        BASE_PORT) BASE_PORT=$v ;;
        esac
    done <"$f"
    if ! is_uint "$NODES" || ! is_uint "$BASE_PORT"; then
        die "$f is damaged (NODES=$NODES BASE_PORT=$BASE_PORT)"
    fi
}

write_layout() {
    local f="$DIR/cluster.env"
    printf '# written by deploy/local-cluster.sh start (or deploy/run.sh); read by local-cluster.sh\nNODES=%s\nBASE_PORT=%s\n' \
        "$NODES" "$BASE_PORT" >"$f.tmp"
    mv "$f.tmp" "$f"
}

check_binary() {
    [ -x "$EVBUSD" ] || die "no evbusd at $EVBUSD: build first (cmake -S . -B build && cmake --build build) or set EVBUSD"
    [[ ${EVBUSD##*/} == *evbusd* ]] || die "EVBUSD=$EVBUSD: the file name must contain 'evbusd' (the pid checks look for it)"
    BOOTSTRAP=0
    if have_bootstrap; then
        BOOTSTRAP=1
    elif [ "$NODES" -gt 1 ]; then
        die "$EVBUSD has no --bootstrap flag, so it cannot form a $NODES-node cluster (use -n 1)"
    fi
}

# start_node I [FD]: starts node I in the background, its output appended to DIR/nodeI.log or
# sent to file descriptor FD. The node runs in its own session, so a Ctrl-C or a hangup of this
# terminal does not reach it (deploy/run.sh stops its nodes itself, with one SIGTERM each). $! is
# evbusd itself: the subshell execs setsid, which does not fork because a child of a shell
# without job control is never a process group leader.
start_node() {
    local i=$1 out_fd=${2:-} pid log where pidf
    local -a launch=()
    log="$DIR/node$i.log"
    pidf=$(pid_file "$i")
    node_args "$i"
    if command -v setsid >/dev/null 2>&1; then launch=(setsid); fi
    mkdir -p "$DIR/node$i"
    if [ -n "$out_fd" ]; then
        where="output on this terminal"
        (
            trap '' HUP
            exec >&"$out_fd" 2>&1 {out_fd}>&-
            exec "${launch[@]}" "$EVBUSD" "${EXTRA_ARGS[@]}" "${ARGS[@]}"
        ) </dev/null &
    else
        where="log $log"
        printf '# local-cluster.sh %s: %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$EVBUSD" \
            "${EXTRA_ARGS[*]} ${ARGS[*]}" >>"$log"
        (
            trap '' HUP
            exec "${launch[@]}" "$EVBUSD" "${EXTRA_ARGS[@]}" "${ARGS[@]}"
        ) </dev/null >>"$log" 2>&1 &
    fi
    pid=$!
    # The pid file tracks it; without this, bash reports "Killed" when `kill I` hits it.
    disown "$pid" 2>/dev/null || true
    echo "$pid" >"$pidf.tmp"
    mv "$pidf.tmp" "$pidf"
    # Until the exec, the child still looks like this script; later checks need it to be evbusd.
    local deadline=$((SECONDS + 5))
    while pid_running "$pid" && ! is_our_node "$pid" "$i" && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.05
    done
    STARTED+=("$i:$pid")
    note "node $i started (pid $pid, client $HOST:$(client_port "$i"), raft $HOST:$(raft_port "$i"), $where)"
}

# Waits until every node started by this invocation accepts TCP on its client port. A node that
# exits, or the deadline, stops the nodes started here and fails.
wait_ready() {
    local deadline=$((SECONDS + TIMEOUT)) entry i pid
    local -a pending=("${STARTED[@]}") left
    while [ ${#pending[@]} -gt 0 ]; do
        left=()
        for entry in "${pending[@]}"; do
            i=${entry%%:*} pid=${entry#*:}
            if ! pid_running "$pid"; then
                note "node $i exited during startup; end of $DIR/node$i.log:"
                tail -n 20 "$DIR/node$i.log" >&2 || true
                abort_started
            fi
            port_open "$(client_port "$i")" || left+=("$entry")
        done
        pending=("${left[@]}")
        [ ${#pending[@]} -eq 0 ] && break
        if [ "$SECONDS" -ge "$deadline" ]; then
            note "timed out after ${TIMEOUT}s waiting for node(s) ${pending[*]%%:*} to listen"
            abort_started
        fi
        sleep 0.2
    done
}

abort_started() {
    local entry
    local -a ids=()
    for entry in "${STARTED[@]}"; do ids+=("${entry%%:*}"); done
    stop_nodes 10 "${ids[@]}" || true
    die "start failed; logs are in $DIR"
}

# stop_nodes TIMEOUT I...: SIGTERM, wait up to TIMEOUT seconds, then SIGKILL; removes pid files.
stop_nodes() {
    local timeout=$1 i pid entry deadline killed=0
    shift
    local -a live=() left=()
    for i in "$@"; do
        if pid=$(node_pid "$i"); then
            kill -TERM "$pid" 2>/dev/null || true
            live+=("$i:$pid")
        else
            [ -f "$(pid_file "$i")" ] && note "node $i: not running, removing its stale pid file"
            rm -f "$(pid_file "$i")"
        fi
    done
    [ ${#live[@]} -gt 0 ] || note "no node was running"
    deadline=$((SECONDS + timeout))
    while :; do
        left=()
        for entry in "${live[@]}"; do
            i=${entry%%:*} pid=${entry#*:}
            if is_our_node "$pid" "$i"; then
                left+=("$entry")
            else
                note "node $i stopped (pid $pid)"
                rm -f "$(pid_file "$i")"
            fi
        done
        live=("${left[@]}")
        [ ${#live[@]} -gt 0 ] || return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            if [ $killed = 1 ]; then
                note "node(s) ${live[*]%%:*} still there 5s after SIGKILL"
                return 1
            fi
            for entry in "${live[@]}"; do
                i=${entry%%:*} pid=${entry#*:}
                if is_our_node "$pid" "$i"; then
                    note "node $i (pid $pid) still running after ${timeout}s: SIGKILL"
                    kill -KILL "$pid" 2>/dev/null || true
                fi
            done
            killed=1
            deadline=$((SECONDS + 5))
        fi
        sleep 0.1
    done
}

cmd_start() {
    local i pid
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd -P)
    if [ -f "$DIR/cluster.env" ]; then
        load_layout
        if { [ -n "$OPT_N" ] && [ "$OPT_N" != "$NODES" ]; } ||
           { [ -n "$OPT_P" ] && [ "$OPT_P" != "$BASE_PORT" ]; }; then
            die "$DIR holds a $NODES-node cluster at base port $BASE_PORT; start it without -n/-p, or use another -d"
        fi
    else
        NODES=${OPT_N:-3} BASE_PORT=${OPT_P:-7070}
    fi
    if [ "$NODES" -lt 1 ] || [ "$NODES" -gt 99 ]; then die "-n must be 1..99"; fi
    if [ "$BASE_PORT" -lt 1 ] || [ $((BASE_PORT + 2 * NODES - 1)) -gt 65535 ]; then
        die "ports $BASE_PORT..$((BASE_PORT + 2 * NODES - 1)) are out of range"
    fi
    check_binary
    for ((i = 1; i <= NODES; i++)); do
        if pid=$(node_pid "$i"); then
            die "node $i is already running (pid $pid); use stop, or restart for a single node"
        fi
    done
    for ((i = 1; i <= NODES; i++)); do check_ports_free "$i"; done
    [ -f "$DIR/cluster.env" ] || write_layout
    STARTED=()
    for ((i = 1; i <= NODES; i++)); do start_node "$i"; done
    wait_ready
    note "$NODES node(s) listening; cluster status: $0 status -d $DIR"
    servers_line
}

cmd_restart() {
    local i=$1 pid
    check_binary
    if pid=$(node_pid "$i"); then
        die "node $i is already running (pid $pid)"
    fi
    check_ports_free "$i"
    STARTED=()
    start_node "$i"
    wait_ready
    servers_line
}

cmd_stop() {
    local i
    local -a all=()
    load_layout
    for ((i = 1; i <= NODES; i++)); do all+=("$i"); done
    stop_nodes "$TIMEOUT" "${all[@]}"
}

cmd_kill() {
    local i=$1 pid deadline
    pid=$(node_pid "$i") || die "node $i is not running"
    kill -KILL "$pid"
    deadline=$((SECONDS + 5))
    while is_our_node "$pid" "$i"; do
        [ "$SECONDS" -lt "$deadline" ] || die "node $i (pid $pid) survived SIGKILL"
        sleep 0.1
    done
    rm -f "$(pid_file "$i")"
    note "node $i killed (pid $pid); bring it back with: $0 restart $i -d $DIR"
}

cmd_status() {
    local i pid state running=0 rc=0
    load_layout
    echo "cluster in $DIR: $NODES node(s), base port $BASE_PORT"
    for ((i = 1; i <= NODES; i++)); do
        if pid=$(node_pid "$i"); then
            state="running (pid $pid)"
            running=$((running + 1))
        elif [ -n "$(read_pid "$i")" ]; then
            state="down (stale pid file)"
        else
            state="down"
        fi
        printf 'node%-3s %-22s client %s:%s  raft %s:%s\n' "$i" "$state" \
            "$HOST" "$(client_port "$i")" "$HOST" "$(raft_port "$i")"
    done
    if [ "$running" -gt 0 ]; then
        if [ -x "$EVBUSCTL" ]; then
            echo
            "$EVBUSCTL" --servers "$(servers_line)" --timeout 3000 cluster status || rc=1
        else
            note "no evbusctl at $EVBUSCTL (set EVBUSCTL): skipping cluster status"
        fi
    fi
    [ "$running" -eq "$NODES" ] || rc=1
    return $rc
}

# Subcommand first, then options and (kill, restart) the node number in any order.
main() {
    local v
    [ $# -ge 1 ] || usage
    CMD=$1
    shift
    case $CMD in
    -h | --help | help) usage 0 ;;
    start | stop | status | kill | restart) ;;
    *)
        echo "local-cluster: unknown subcommand '$CMD'" >&2
        usage
        ;;
    esac
    DIR=./evbus-cluster OPT_N="" OPT_P="" TIMEOUT="" NODE=""
    while [ $# -gt 0 ]; do
        case $1 in
        -d | -n | -p | -t)
            [ $# -ge 2 ] || die "$1 needs a value"
            case $1 in
            -d) DIR=$2 ;;
            -n) OPT_N=$2 ;;
            -p) OPT_P=$2 ;;
            -t) TIMEOUT=$2 ;;
            esac
            shift 2
            ;;
        -h | --help) usage 0 ;;
        -*) die "unknown option '$1'" ;;
        *)
            [ -z "$NODE" ] || die "unexpected argument '$1'"
            NODE=$1
            shift
            ;;
        esac
    done
    [ -n "$DIR" ] || die "-d needs a directory"
    for v in "$OPT_N" "$OPT_P" "$TIMEOUT"; do
        [ -z "$v" ] || is_uint "$v" || die "'$v' is not a number"
    done
    if [ "$CMD" != start ] && { [ -n "$OPT_N" ] || [ -n "$OPT_P" ]; }; then
        die "-n and -p go with start only (the layout is read from DIR/cluster.env)"
    fi
    case $CMD in
    kill | restart)
        [ -n "$NODE" ] || die "$CMD needs a node number"
        is_uint "$NODE" || die "'$NODE' is not a node number"
        ;;
    *) [ -z "$NODE" ] || die "$CMD takes no node number" ;;
    esac
    if [ "$CMD" != start ]; then
        [ -d "$DIR" ] || die "no directory $DIR"
        DIR=$(cd "$DIR" && pwd -P)
    fi

    case $CMD in
    start)
        TIMEOUT=${TIMEOUT:-30}
        cmd_start
        ;;
    stop)
        TIMEOUT=${TIMEOUT:-15}
        cmd_stop
        ;;
    status) cmd_status ;;
    kill | restart)
        TIMEOUT=${TIMEOUT:-30}
        load_layout
        if [ "$NODE" -lt 1 ] || [ "$NODE" -gt "$NODES" ]; then
            die "node $NODE: the cluster has nodes 1..$NODES"
        fi
        "cmd_$CMD" "$NODE"
        ;;
    esac
}

# Sourced (deploy/run.sh does), this file only defines the functions above.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
