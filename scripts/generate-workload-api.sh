#!/usr/bin/env bash
# Regenerates Sources/VeilWorkloadAPI/Generated from Protos/workload.proto: the messages only (the
# gRPC serving is Veil's own, VeilWorkloadAPI/GRPCServer.swift). Needs protoc (Debian
# protobuf-compiler) and protoc-gen-swift built from the swift-protobuf version Package.swift names
# (`swift build -c release --product protoc-gen-swift` in a scratch package depending on it); pass
# that package's .build/release as PLUGINS. The output is committed: building the plugin takes
# minutes, so CI never runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
plugins=${PLUGINS:?set PLUGINS to the directory holding protoc-gen-swift}
out=Sources/VeilWorkloadAPI/Generated
protoc --plugin=protoc-gen-swift="$plugins/protoc-gen-swift" --swift_out="$out" --swift_opt=Visibility=Public -I Protos Protos/workload.proto
echo "generated into $out"
