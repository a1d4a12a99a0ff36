#!/usr/bin/env bash
# Regenerates Sources/MeridianEtcdAPI from Protos/etcd/*.proto. The output is committed; run this
# only after editing a .proto. Needs protoc (Debian: protobuf-compiler); the two Swift plugins are
# built from the package graph so their versions match the runtime libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler" >&2; exit 1; }
swift build --product protoc-gen-swift >/dev/null
swift build --product protoc-gen-grpc-swift-2 >/dev/null
BIN=$(swift build --show-bin-path)
OUT=Sources/MeridianEtcdAPI
rm -f "$OUT"/*.pb.swift "$OUT"/*.grpc.swift
protoc \
  --plugin=protoc-gen-swift="$BIN/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift-2="$BIN/protoc-gen-grpc-swift-2" \
  -I Protos \
  --swift_opt=Visibility=Public,FileNaming=PathToUnderscores --swift_out="$OUT" \
  --grpc-swift-2_opt=Visibility=Public,FileNaming=PathToUnderscores --grpc-swift-2_out="$OUT" \
  etcd/kv.proto etcd/auth.proto etcd/rpc.proto
echo "generated: $(ls "$OUT")"
