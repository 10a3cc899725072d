#!/usr/bin/env bash
# Sets everything up and starts a single-device zone on the embedded SQLite store, then prints where to activate it.
# BUCKYOS_ROOT picks the node root (default /opt/buckyos); extra arguments go to `buckyos start`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node bin/buckyos.mjs start ${BUCKYOS_ROOT:+--root "$BUCKYOS_ROOT"} "$@"
