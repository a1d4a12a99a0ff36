#!/usr/bin/env bash
# Sets up a fresh machine and runs every test: unit tests, BPF programs run by the kernel, and
# integration tests with real etcd over mTLS and lab nodes in network namespaces. The suites
# run one after another: the integration suites each start several etcd processes, agents and
# pods, and two cores shared between them make etcd miss its request deadlines.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if [ "$(id -u)" != 0 ] && [ -n "${CI:-}" ]; then
  echo "CI must run as root: the datapath tests load BPF programs and create network namespaces" >&2
  exit 1
fi
swift build --build-tests
swift test --skip-build --no-parallel
