#!/usr/bin/env bash
# Builds the release binary users deploy and benchmarks are reported from
# (.build/release/meridian), installing what a fresh machine lacks first; prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
started=$(date +%s)
swift build -c release --product meridian
echo "release build: $(( $(date +%s) - started )) s -> .build/release/meridian"
