#!/usr/bin/env bash
# The release build Veil is measured and shipped as: `swift build -c release` with one compiler
# flag for every Swift module, the packages Veil depends on included (a root package's own
# settings reach only its targets). Without mangled-name metadata accessors the compiler calls
# a generic type's metadata accessor directly instead of demangling the type's name at run
# time, which in a fresh process scans every protocol conformance record of the binary once
# per new type: swift-nio's pipeline set-up and swift-certificates' chain check did so at every
# start (docs/decisions.md, Launcher and activation). VEIL_RELEASE_SCRIPT lets `veil-bench
# --record` note that a run used this build. Extra arguments go to `swift build`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
exec swift build -c release \
  -Xswiftc -Xfrontend -Xswiftc -disable-concrete-type-metadata-mangled-name-accessors \
  -Xswiftc -DVEIL_RELEASE_SCRIPT "$@"
