#!/usr/bin/env bash
# Installs the Debian packages evbus needs to build, test and run; does nothing when all are present.
# libraft-dev comes from bookworm-backports (0.22.1): Debian 12's own 0.15.0 has Raft safety bugs
# (see DESIGN.md), so the suite is added to apt's sources when missing.
set -euo pipefail

PKGS=(build-essential cmake pkg-config git ca-certificates python3
      libuv1-dev librocksdb-dev nanopb libnanopb-dev python3-protobuf
      libjansson-dev libcmocka-dev zlib1g-dev uuid-dev
      clang libclang-rt-14-dev)  # clang + its runtimes: the libFuzzer targets in tests/fuzz/
RAFT_PKG=libraft-dev
RAFT_MIN=0.22

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-deps: need root (or sudo) to install packages" >&2; exit 1
    fi
fi

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

raft_ok=0
if v=$(dpkg-query -W -f='${Status} ${Version}' "$RAFT_PKG" 2>/dev/null) &&
   echo "$v" | grep -q "install ok installed"; then
    ver=${v##* }
    if dpkg --compare-versions "$ver" ge "$RAFT_MIN"; then raft_ok=1; fi
fi

if [ ${#missing[@]} -eq 0 ] && [ $raft_ok -eq 1 ]; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if [ $raft_ok -eq 0 ]; then
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "install-deps: adding the bookworm-backports suite for $RAFT_PKG >= $RAFT_MIN"
        $SUDO tee /etc/apt/sources.list.d/evbus-bookworm-backports.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
fi

echo "install-deps: installing ${missing[*]} ${RAFT_PKG}"
$SUDO apt-get update -q
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ $raft_ok -eq 0 ]; then
    $SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports "$RAFT_PKG"
fi
