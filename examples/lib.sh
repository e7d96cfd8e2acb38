# Shared steps of the examples: build veil, start a simulated coordinator on free ports,
# attest it and pin its root. Sourced by examples/*/run.sh.
set -euo pipefail

export PATH=/opt/swift/usr/bin:$PATH:/usr/sbin
VEIL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VEIL=${VEIL:-$VEIL_ROOT/.build/debug/veil}
PIDS=()

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${WORK:-}" ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until SECONDS CMD...: retries CMD every 0.1 s.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# require_podman TOOL...: podman, TOOLs and the Python modules a pod example needs, and a
# CONTAINERS_CONF for kube play in a sandbox without CAP_SYS_RESOURCE (podman must not raise
# its own limits).
require_podman() {
  for tool in podman "$@"; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (bash scripts/install-deps.sh test)"
  done
  python3 -c 'import jsonpatch, yaml' 2>/dev/null || fail "python3 needs jsonpatch and PyYAML (bash scripts/install-deps.sh test)"
  export CONTAINERS_CONF=${CONTAINERS_CONF:-$(mktemp /tmp/veil-containers.XXXXXX.conf)}
  grep -q default_ulimits "$CONTAINERS_CONF" 2>/dev/null \
    || printf '[containers]\ndefault_ulimits=["nofile=4096:4096","nproc=4096:4096"]\n' >"$CONTAINERS_CONF"
}

# build_veil: builds every product the examples use: veil (coordinator, CLI, runtime) and
# veil-launcher (what converted images and pods carry).
build_veil() {
  if [ -z "${VEIL_SKIP_BUILD:-}" ]; then
    step "building veil and veil-launcher"
    (cd "$VEIL_ROOT" && swift build --product veil && swift build --product veil-launcher)
  fi
  [ -x "$VEIL" ] || fail "no veil binary at $VEIL"
  [ -x "$(dirname "$VEIL")/veil-launcher" ] || fail "no veil-launcher beside $VEIL"
}

start_coordinator() {
  # Provisioned files go only to memory filesystems: work under /dev/shm (tmpfs).
  WORK=$(mktemp -d /dev/shm/veil-example.XXXXXX)
  CLIENT_ADDR=127.0.0.1:$(free_port)
  MESH_ADDR=127.0.0.1:$(free_port)
  SIM_KEY=$WORK/data/simulation-platform-key.pem
  export VEIL_CONFIG_DIR=$WORK/config VEIL_COORDINATOR=$CLIENT_ADDR
  step "starting the coordinator (simulated TEE: development only, no confidentiality)"
  "$VEIL" coordinator --tee simulated --data-dir "$WORK/data" --client-addr "$CLIENT_ADDR" --mesh-addr "$MESH_ADDR" \
    >"$WORK/coordinator.log" 2>&1 &
  PIDS+=($!)
  wait_until 20 curl -sfk "https://$CLIENT_ADDR/healthz" || { cat "$WORK/coordinator.log"; fail "coordinator did not start"; }
  step "attesting the coordinator and pinning its root certificate"
  "$VEIL" attest --allow-simulation --simulation-key "$SIM_KEY" --expect "$("$VEIL" measure --coordinator)" --root-output "$WORK/root.pem"
}

# render_manifest TEMPLATE OUT KEY=VALUE...: replaces @KEY@ with VALUE (and @WORK@ with $WORK).
render_manifest() {
  local template=$1 out=$2; shift 2
  local args=(-e "s#@WORK@#$WORK#g")
  for pair in "$@"; do args+=(-e "s#@${pair%%=*}@#${pair#*=}#g"); done
  sed "${args[@]}" "$template" >"$out"
}

# launch_args SERVICE: sets LAUNCH_ARGS to `launch` with this example's coordinator, the
# simulated TEE and the pinned root, as SERVICE. An array, not a wrapper function: a
# backgrounded function is a subshell, and cleanup must stop the launcher (the app) itself.
launch_args() {
  LAUNCH_ARGS=(launch --coordinator "$MESH_ADDR" --service "$1" --tee simulated --simulation-key "$SIM_KEY" --root-ca "$WORK/root.pem")
}

# veil_launch SERVICE [LAUNCH-OPTION...] -- PROGRAM ARGS...: `veil launch` in the foreground.
veil_launch() {
  launch_args "$1"; shift
  "$VEIL" "${LAUNCH_ARGS[@]}" "$@"
}

# launch SERVICE LOG PROGRAM ARGS...: runs PROGRAM under `veil launch` in the background.
launch() {
  local log=$2
  launch_args "$1"; shift 2
  "$VEIL" "${LAUNCH_ARGS[@]}" -- "$@" >"$log" 2>&1 &
  PIDS+=($!)
}

# build_redis_image PORT DIR [CONF-LINE...]: Debian's redis-server packed into
# $WORK/images:redis, configured for TLS only on 127.0.0.1:PORT with the certificates the
# coordinator provisions under /run/veil/tls, data directory DIR, plus CONF-LINEs.
build_redis_image() {
  local port=$1 dir=$2; shift 2
  {
    printf '%s\n' "port 0" "bind 127.0.0.1" "tls-port $port" "tls-cert-file /run/veil/tls/cert.pem" \
      "tls-key-file /run/veil/tls/key.pem" "tls-ca-cert-file /run/veil/tls/ca.pem" "tls-auth-clients no" \
      'save ""' "appendonly no" "dir $dir" "$@"
  } >"$WORK/redis.conf"
  build_image "$WORK/images" redis "$(command -v redis-server)" "$WORK/redis.conf=/etc/redis/redis.conf" \
    -- /usr/bin/redis-server /etc/redis/redis.conf
}

# build_image LAYOUT TAG FILE... -- ENTRYPOINT...: packs host files into a one-layer OCI image
# with umoci, the way a Dockerfile's COPY would. A FILE is a host path (copied to the same path
# together with every library `ldd` lists for it) or SRC=DEST (copied as is). IMAGE_USER, when
# set, becomes the image's User.
build_image() {
  command -v umoci >/dev/null || fail "umoci is not installed (apt-get install -y umoci)"
  local layout=$1 tag=$2; shift 2
  local files=() entry
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do files+=("$1"); shift; done
  shift
  local bundle; bundle=$(mktemp -d /tmp/veil-bundle.XXXXXX)
  [ -f "$layout/oci-layout" ] || umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci unpack --image "$layout:$tag" "$bundle/b" >/dev/null
  local plain=()
  for entry in "${files[@]}"; do
    if [[ $entry == *=* ]]; then
      install -D -m 0644 "${entry%%=*}" "$bundle/b/rootfs${entry#*=}"
    else
      plain+=("$entry")
    fi
  done
  for entry in "${plain[@]}" $(ldd "${plain[@]}" 2>/dev/null | grep -o '/[^ :]*' | sort -u); do
    mkdir -p "$bundle/b/rootfs$(dirname "$entry")"
    cp -L "$entry" "$bundle/b/rootfs$entry"
  done
  # The working directory below: runtimes do not create it when no volume is mounted there.
  install -d -m 1777 "$bundle/b/rootfs/tmp"
  umoci repack --image "$layout:$tag" "$bundle/b"
  local args=()
  for entry in "$@"; do args+=(--config.entrypoint "$entry"); done
  [ -z "${IMAGE_USER:-}" ] || args+=(--config.user "$IMAGE_USER")
  umoci config --image "$layout:$tag" "${args[@]}" --config.workingdir /tmp --config.env PATH=/usr/bin:/bin
  rm -rf "$bundle"
}

# manifest_with_tls_files SNIPPET OUT SERVICE: the manifest `veil image convert` printed, with the
# service's TLS certificate (and intermediate), key and the root provisioned into /run/veil/tls
# and simulation allowed (development only).
manifest_with_tls_files() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1]))
manifest["Services"][sys.argv[3]]["Parameters"] = {"Files": {
    "/run/veil/tls/cert.pem": "{{ pem .Veil.Service.Cert }}{{ pem .Veil.IntermediateCA.Cert }}",
    "/run/veil/tls/key.pem": "{{ pem .Veil.Service.Private }}",
    "/run/veil/tls/ca.pem": "{{ pem .Veil.RootCA.Cert }}"}}
manifest["Config"] = {"AllowSimulation": True}
json.dump(manifest, open(sys.argv[2], "w"), indent=2)
PY
}
