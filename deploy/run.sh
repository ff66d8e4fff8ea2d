#!/usr/bin/env bash
# One command from a fresh Debian 12 to a running evbus node: installs what is missing, builds,
# and runs evbusd in the foreground with embedded defaults (no config file needed).
# Ctrl-C stops it cleanly. Settings: flags after `--`, or EVBUS_* variables, e.g.
#   deploy/run.sh -- --listen 127.0.0.1:8080
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" >/dev/null

[ "${1:-}" = "--" ] && shift
listen=${EVBUS_LISTEN:-127.0.0.1:7070}
for ((i = 1; i <= $#; i++)); do
    case "${!i}" in
    --listen) j=$((i + 1)); listen=${!j} ;;
    --listen=*) listen=${!i#--listen=} ;;
    esac
done

ctl="$top/build/src/evbusctl --servers $listen"
cat <<MSG
evbus: starting evbusd (client protocol on $listen, data in ${EVBUS_DATA_DIR:-./evbus-data}).
Try, from another terminal:
  $ctl bus create orders
  $ctl publish orders --source shop --detail-type OrderPlaced --detail '{"id":42}'
  $ctl read orders --partition 0 --count 10      # or: bus describe orders
Stop with Ctrl-C.
MSG
exec "$top/build/src/evbusd" "$@"
