#!/usr/bin/env bash
# Sets everything up, checks types and layering, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run typecheck
npm run lint:layers
npm test
