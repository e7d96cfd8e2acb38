#!/usr/bin/env bash
# The embedded single-machine flow, end to end: Debian's unmodified redis-server packed into an
# OCI image, converted into a Veil image whose redis.conf (with the password) is encrypted,
# run with runc by `veil run`, and answered over TLS by the real redis-cli.
source "$(dirname "$0")/../lib.sh"
for tool in redis-server redis-cli runc umoci; do
  command -v $tool >/dev/null || fail "$tool is not installed (apt-get install -y redis-server redis-tools runc umoci)"
done

build_veil
start_coordinator

REDIS_PORT=$(free_port)
PASSWORD=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
step "packing redis-server into an OCI image with umoci"
build_redis_image "$REDIS_PORT" /tmp "requirepass $PASSWORD"

step "converting: launcher injected, /etc/redis/redis.conf encrypted"
"$VEIL" image convert --from "oci:$WORK/images:redis" --to "oci:$WORK/images:redis-veil" --service cache \
  --encrypt /etc/redis/redis.conf --key "$WORK/image.key" >"$WORK/snippet.json"
python3 - "$WORK/images" redis-veil "$PASSWORD" <<'PY' || fail "the converted image holds the plaintext password"
import gzip, json, sys
layout, tag, secret = sys.argv[1], sys.argv[2], sys.argv[3].encode()
blob = lambda digest: open(f"{layout}/blobs/sha256/{digest[7:]}", "rb").read()
index = json.load(open(f"{layout}/index.json"))
manifest = json.loads(blob(next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)["digest"]))
for layer in manifest["layers"]:
    data = blob(layer["digest"])
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    sys.exit(1) if secret in data else None
PY
skopeo inspect "oci:$WORK/images:redis-veil" >/dev/null 2>&1 || ! command -v skopeo >/dev/null || fail "skopeo cannot read the converted image"

step "setting the manifest (measurement from the conversion, TLS files provisioned into /run)"
manifest_with_tls_files "$WORK/snippet.json" "$WORK/manifest.json" cache
"$VEIL" manifest set "$WORK/manifest.json" --secret cache-protected-files="$WORK/image.key"

step "veil run oci:…:redis-veil (runc; simulated TEE: development only, no confidentiality)"
"$VEIL" run "oci:$WORK/images:redis-veil" --tee simulated --simulation-key "$SIM_KEY" --coordinator "$MESH_ADDR" \
  --root-ca "$WORK/root.pem" --state-dir "$WORK/state" >"$WORK/redis.log" 2>&1 &
RUN_PID=$!
PIDS+=($RUN_PID)
wait_until 60 redis-cli --tls --cacert "$WORK/root.pem" -p "$REDIS_PORT" --no-auth-warning -a "$PASSWORD" PING \
  || { cat "$WORK/redis.log"; fail "redis did not come up"; }

step "redis-cli --tls --cacert root.pem -a PASSWORD PING"
answer=$(redis-cli --tls --cacert "$WORK/root.pem" -p "$REDIS_PORT" --no-auth-warning -a "$PASSWORD" PING)
echo "$answer"
[ "$answer" = "PONG" ] || fail "expected PONG, got '$answer'"
kill -TERM $RUN_PID
wait $RUN_PID || true
echo "OK: the converted redis image answered PONG over TLS, its encrypted config unlocked only after attestation"
