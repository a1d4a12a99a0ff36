#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and run Meridian: etcd (server and
# client), util-linux's setsid and nsenter, iproute2, procps' sysctl, nftables (lab faults), curl for pods, Prometheus
# (`lab up --prometheus`), Chromium (the UI test loads `meridian ui` headless), wireguard-go and
# wireguard-tools (`lab up --encryption wireguard` on kernels without the module), and the
# build's system libraries (libbpf and what it links). Idempotent.
set -euo pipefail
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v setsid >/dev/null || need+=(util-linux)
command -v openssl >/dev/null || need+=(openssl)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
command -v sysctl >/dev/null || need+=(procps)
command -v curl >/dev/null || need+=(curl)
command -v iptables-restore >/dev/null || need+=(iptables)
command -v nft >/dev/null || need+=(nftables)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v sockperf >/dev/null || need+=(sockperf)
command -v wrk >/dev/null || need+=(wrk)
command -v prometheus >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
# Transparent encryption: wireguard-go (user-space WireGuard, for kernels without the module) and wg.
command -v wireguard-go >/dev/null || need+=(wireguard-go)
command -v wg >/dev/null || need+=(wireguard-tools)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -f /usr/include/bpf/libbpf.h ] || need+=(libbpf-dev)
[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian enables and starts the packaged etcd service on install; Meridian runs its own.
# The same for Prometheus (and the node exporter it recommends): `lab up --prometheus` runs its own.
for service in etcd prometheus prometheus-node-exporter; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl stop "$service" || true
    systemctl disable "$service" >/dev/null 2>&1 || true
  fi
done
