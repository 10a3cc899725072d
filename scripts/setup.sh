#!/usr/bin/env bash
# Installs everything BuckyOS-TS needs on a fresh Debian machine (run as root), then builds it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(etcd-server etcd-client sqlite3 python3 make g++ iproute2 procps openssl nftables iputils-ping dnsmasq bind9-dnsutils knot-dnsutils dnsperf udhcpc litmus rclone chromium fonts-wqy-microhei)
missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

npm ci --no-audit --no-fund
# npm ci builds the batched-UDP addon through the package's install script; a tree installed some other way gets it here.
test -f native/udp-batch/build/Release/udp_batch.node -a -f native/dfs-hash/build/Release/dfs_hash.node || npm run build:native
npm run build
