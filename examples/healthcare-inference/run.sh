#!/usr/bin/env bash
# Confidential inference on health data, end to end: a scikit-learn model trained at set-up on
# the bundled breast cancer data is served by an unmodified-Python HTTPS server (Debian's python3
# and python3-sklearn) packed with its interpreter and libraries into an OCI image, converted
# with the model file encrypted. The clinic's client attests the coordinator, pins its root,
# reads its client certificate as a manifest user, and sends held-out patients over mutual TLS;
# every prediction must equal scikit-learn's own. Then the host tampers: a flipped byte in the
# encrypted model, the previous model version put back, one changed library — each refused
# before the server starts. BENCH=1 also compares requests/s and p99 with the same server
# without Veil.
source "$(dirname "$0")/../lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
for tool in umoci runc openssl; do command -v $tool >/dev/null || fail "$tool is not installed"; done
$PY -c 'import sklearn, joblib, numpy, scipy' 2>/dev/null \
  || fail "Debian's python3 needs scikit-learn (apt-get install -y python3-sklearn python3-joblib)"

build_veil
start_coordinator
STATE=$WORK/state

step "training the model on the bundled breast cancer data (version 1; version 2 for the update)"
mkdir -p "$WORK/v1" "$WORK/v2"
$PY "$HERE/train.py" "$WORK/v1" 1.0
$PY "$HERE/train.py" "$WORK/v2" 0.05

step "packing python3, scikit-learn and its libraries with the server into an OCI image (umoci)"
umoci init --layout "$WORK/images"
umoci new --image "$WORK/images:inference"
umoci unpack --image "$WORK/images:inference" "$WORK/bundle" >/dev/null
ROOTFS=$WORK/bundle/rootfs
PACKAGES=(/usr/lib/python3/dist-packages/{sklearn,scipy,numpy,joblib,threadpoolctl.py})
mkdir -p "$ROOTFS/usr/lib/python3/dist-packages" "$ROOTFS/srv/model" "$ROOTFS/usr/bin"
cp -a /usr/lib/python3.11 "$ROOTFS/usr/lib/"
rm -rf "$ROOTFS/usr/lib/python3.11/test" "$ROOTFS/usr/lib/python3.11/idlelib" "$ROOTFS/usr/lib/python3.11/tkinter"
cp -a "${PACKAGES[@]}" "$ROOTFS/usr/lib/python3/dist-packages/"
cp -L /usr/bin/python3.11 "$ROOTFS/usr/bin/python3.11"
for lib in $( (echo /usr/bin/python3.11; find "${PACKAGES[@]}" /usr/lib/python3.11/lib-dynload -name '*.so*') | xargs ldd 2>/dev/null \
    | grep -o '/[^ :]*' | grep -v "^$ROOTFS" | sort -u); do
  [ -e "$ROOTFS$lib" ] || { mkdir -p "$ROOTFS$(dirname "$lib")"; cp -L "$lib" "$ROOTFS$lib"; }
done
cp "$HERE/server.py" "$ROOTFS/srv/server.py"
cp "$WORK/v1/model.joblib" "$ROOTFS/srv/model/model.joblib"
umoci repack --image "$WORK/images:inference" "$WORK/bundle"
umoci config --image "$WORK/images:inference" --config.entrypoint /usr/bin/python3.11 --config.entrypoint /srv/server.py \
  --config.workingdir /srv --config.env PATH=/usr/bin:/bin
rm -rf "$WORK/bundle"
echo "image: $(du -sh "$WORK/images" | cut -f1)"

step "converting: launcher injected, /srv/model/model.joblib encrypted (version 1)"
"$VEIL" image convert --from "oci:$WORK/images:inference" --to "oci:$WORK/images:inference-veil" --service inference \
  --encrypt /srv/model/model.joblib --key "$WORK/image.key" --quiet >"$WORK/snippet.json"

step "the manifest: the service, its TLS files and settings, the clinic's client certificate and who may read it"
PORT=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/operator.key" -out "$WORK/operator.pem" \
  -days 2 -subj /CN=clinic-operator 2>/dev/null
$PY - "$WORK/snippet.json" "$WORK/manifest.json" "$PORT" "$WORK/operator.pem" <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1]))
manifest["Services"]["inference"]["Parameters"] = {
    "Files": {"/run/veil/tls/cert.pem": "{{ pem .Veil.Service.Cert }}{{ pem .Veil.IntermediateCA.Cert }}",
              "/run/veil/tls/key.pem": "{{ pem .Veil.Service.Private }}",
              "/run/veil/tls/ca.pem": "{{ pem .Veil.RootCA.Cert }}"},
    "Env": {"PORT": sys.argv[3], "MODEL": "/srv/model/model.joblib", "ALLOWED_CLIENTS": "clinic", "TLS_DIR": "/run/veil/tls"}}
manifest.setdefault("Secrets", {})["clinic-client"] = {"Type": "cert-ecdsa", "Cert": {"Subject": {"CommonName": "clinic"}}}
# Another client under the same root, with a name the service does not allow (for the refusal below).
manifest["Secrets"]["lab-client"] = {"Type": "cert-ecdsa", "Cert": {"Subject": {"CommonName": "lab"}}}
manifest["Users"] = {"clinic": {"Certificate": open(sys.argv[4]).read(), "Roles": ["read-client-certificate"]}}
manifest["Roles"] = {"read-client-certificate": {"ResourceType": "Secrets", "ResourceNames": ["clinic-client", "lab-client"], "Actions": ["ReadSecret"]}}
manifest["Config"] = {"AllowSimulation": True}
json.dump(manifest, open(sys.argv[2], "w"), indent=2)
PY
"$VEIL" manifest set "$WORK/manifest.json" --secret inference-protected-files="$WORK/image.key" >/dev/null
"$VEIL" secret get clinic-client lab-client --user-cert "$WORK/operator.pem" --user-key "$WORK/operator.key" >"$WORK/client-secret.json"
"$VEIL" certificate chain > "$WORK/chain.pem"
# The client presents its certificate with the intermediate CA; the service trusts only the root.
$PY - "$WORK/client-secret.json" "$WORK" <<'PY'
import json, sys
secrets = json.load(open(sys.argv[1]))
chain = open(f"{sys.argv[2]}/chain.pem").read()
intermediate = chain[: chain.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"
for name in ("clinic", "lab"):
    secret = secrets[f"{name}-client"]
    open(f"{sys.argv[2]}/{name}.pem", "w").write(secret["certificate"] + intermediate)
    open(f"{sys.argv[2]}/{name}.key", "w").write(secret["privateKey"])
PY

run_service() {  # LOG: veil run in the background
  "$VEIL" run "oci:$WORK/images:inference-veil" --tee simulated --simulation-key "$SIM_KEY" --coordinator "$MESH_ADDR" \
    --root-ca "$WORK/root.pem" --state-dir "$STATE" >"$1" 2>&1 &
  RUN_PID=$!
  PIDS+=($RUN_PID)
}
stop_service() { kill -TERM "$RUN_PID" 2>/dev/null || true; wait "$RUN_PID" 2>/dev/null || true; }
client() { $PY "$HERE/client.py" "127.0.0.1:$PORT" "$WORK/root.pem" "$WORK/clinic.pem" "$WORK/clinic.key" "$@"; }
# refused LOG WHAT: the service must exit with WHAT in its output and never listen.
refused() {
  run_service "$1"
  wait "$RUN_PID" && fail "the service started although $2"
  grep -q "$3" "$1" || { cat "$1"; fail "expected '$3' ($2)"; }
  ! (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || fail "something listens on $PORT"
  echo "refused ($2): $(grep -o "veil launch: .*" "$1" | tail -1)"
}

step "veil run (runc; simulated TEE: development only, no confidentiality); predictions over mutual TLS"
run_service "$WORK/run1.log"
wait_until 120 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" || { cat "$WORK/run1.log"; fail "the inference service did not come up"; }
client "$WORK/v1/held-out.json"

step "the service refuses a client without a certificate, and one under the same root with another name"
NO_CERT=$(curl -sk --max-time 10 -o /dev/null -w '%{http_code}' -X POST "https://127.0.0.1:$PORT/predict" -d '{"rows": []}' || true)
[ "$NO_CERT" = 000 ] || fail "a client without a certificate got an HTTP answer ($NO_CERT)"
OTHER_NAME=$(curl -sk --max-time 10 --cert "$WORK/lab.pem" --key "$WORK/lab.key" -X POST "https://127.0.0.1:$PORT/predict" \
  -H 'Content-Type: application/json' -d '{"rows": []}' || true)
grep -q "client not allowed" <<<"$OTHER_NAME" || fail "the client named lab was not refused: $OTHER_NAME"
echo "refused: no certificate (TLS handshake), CN=lab under the same root (403 client not allowed)"
if [ -n "${BENCH:-}" ]; then
  VEIL_RESULT=$(client "$WORK/v1/held-out.json" --benchmark "${BENCH_REQUESTS:-2000}")
fi
stop_service

ROOT=$(ls -d "$STATE"/images/*/rootfs)
MODEL_FILE=$ROOT/veil/protected/srv/model/model.joblib.vpf
cp "$MODEL_FILE" "$WORK/model-v1.vpf"

step "the host flips one byte of the encrypted model"
$PY -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=1; open(p,"wb").write(b)' "$MODEL_FILE"
refused "$WORK/run-tampered.log" "the model file was tampered with" "protected"
cp "$WORK/model-v1.vpf" "$MODEL_FILE"

step "model version 2 sealed back (veil protect seal --previous), then version 1 put back"
"$VEIL" protect seal --key "$WORK/image.key" --path /srv/model/model.joblib --previous "$MODEL_FILE" "$WORK/v2/model.joblib" "$MODEL_FILE"
run_service "$WORK/run2.log"
wait_until 120 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" || { cat "$WORK/run2.log"; fail "version 2 did not come up"; }
client "$WORK/v2/held-out.json"
client "$WORK/v1/held-out.json" >"$WORK/v1-against-v2.log" && fail "version 2 answers like version 1: the update did not take"
echo "(and no longer like version 1: $(cat "$WORK/v1-against-v2.log"))"
stop_service
cp "$WORK/model-v1.vpf" "$MODEL_FILE"
refused "$WORK/run-rollback.log" "an older model version was put back" "rollback"

step "one changed library: a byte of numpy's core flipped"
LIBRARY=$(find "$ROOT/usr/lib/python3/dist-packages/numpy/core" -name '_multiarray_umath*.so' | head -1)
$PY -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=1; open(p,"wb").write(b)' "$LIBRARY"
refused "$WORK/run-library.log" "a library of the image changed" "measurement"

if [ -n "${BENCH:-}" ]; then
  step "benchmark: the same server without Veil (plain TLS from an openssl CA), same client, same rows"
  mkdir -p "$WORK/plain"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/plain/ca.key" -out "$WORK/plain/ca.pem" -days 1 -subj /CN=plain-ca 2>/dev/null
  for name in server clinic; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/plain/$name.key" -out "$WORK/plain/$name.csr" -subj "/CN=$name" 2>/dev/null
    openssl x509 -req -in "$WORK/plain/$name.csr" -CA "$WORK/plain/ca.pem" -CAkey "$WORK/plain/ca.key" -CAcreateserial -days 1 -out "$WORK/plain/$name.pem" 2>/dev/null
  done
  cp "$WORK/plain/server.pem" "$WORK/plain/cert.pem"; cp "$WORK/plain/server.key" "$WORK/plain/key.pem"
  PORT=$PORT MODEL="$WORK/v1/model.joblib" ALLOWED_CLIENTS=clinic TLS_DIR="$WORK/plain" $PY "$HERE/server.py" >"$WORK/plain.log" 2>&1 &
  PIDS+=($!)
  wait_until 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" || { cat "$WORK/plain.log"; fail "the plain server did not come up"; }
  PLAIN_RESULT=$($PY "$HERE/client.py" "127.0.0.1:$PORT" "$WORK/plain/ca.pem" "$WORK/plain/clinic.pem" "$WORK/plain/clinic.key" \
    "$WORK/v1/held-out.json" --benchmark "${BENCH_REQUESTS:-2000}")
  $PY - "$VEIL_RESULT" "$PLAIN_RESULT" <<'PY'
import json, sys
veil, plain = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"inference, one patient per request, keep-alive mutual TLS 1.3:")
print(f"  under Veil   {veil['requests_per_second']:8.0f} req/s  p50 {veil['p50_ms']:.2f} ms  p99 {veil['p99_ms']:.2f} ms")
print(f"  without Veil {plain['requests_per_second']:8.0f} req/s  p50 {plain['p50_ms']:.2f} ms  p99 {plain['p99_ms']:.2f} ms")
print(f"  ratio Veil / plain: {veil['requests_per_second'] / plain['requests_per_second']:.2f}x req/s, p99 {veil['p99_ms'] / plain['p99_ms']:.2f}x")
PY
fi
echo "OK: attested inference matched scikit-learn on every held-out patient; tampering, rollback and a changed library were refused"
