#!/usr/bin/env bash
# Sets up a fresh machine, builds Meridian and runs the walkthrough demo (`meridian demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
swift build --product meridian
exec .build/debug/meridian demo "$@"
