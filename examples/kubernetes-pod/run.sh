#!/usr/bin/env bash
# A labelled pod through `veil injector`, then run: the converted Redis image of
# examples/redis-image, described by an ordinary Pod labelled veil.dev/service=cache, goes
# through the webhook as a real AdmissionReview; the returned JSONPatch is applied with Python's
# jsonpatch (as the API server would) and the mutated pod runs under `podman kube play` with
# runc. redis-cli --tls with the attested root gets PONG. The same pod without the label runs
# the plain image unchanged.
#
# podman 4.3 (Debian) is not a kubelet: it mounts an emptyDir on disk even with medium: Memory,
# and mounts secret volumes still base64-encoded. Those two volume kinds of the mutated pod are
# mapped to hostPath directories holding the same thing (tmpfs under /dev/shm; the decoded key);
# every other field runs as the injector wrote it.
source "$(dirname "$0")/../lib.sh"
require_podman redis-server redis-cli umoci skopeo

build_veil
start_coordinator
POD=veil-example-$$
PODS_UP=()
podman_cleanup() {
  for pod in "${PODS_UP[@]:-}"; do [ -n "$pod" ] && podman pod rm -f "$pod" >/dev/null 2>&1 || true; done
  podman secret rm "$POD-key" >/dev/null 2>&1 || true
  podman rmi -f "localhost/veil-example/redis-veil:$POD" "localhost/veil-example/redis:$POD" >/dev/null 2>&1 || true
  cleanup
}
trap podman_cleanup EXIT

REDIS_PORT=$(free_port)
step "packing redis-server into an OCI image and converting it (service cache)"
build_redis_image "$REDIS_PORT" /run/veil
"$VEIL" image convert --from "oci:$WORK/images:redis" --to "oci:$WORK/images:redis-veil" --service cache --quiet >"$WORK/snippet.json"
manifest_with_tls_files "$WORK/snippet.json" "$WORK/manifest.json" cache
"$VEIL" manifest set "$WORK/manifest.json" >/dev/null
for tag in redis-veil redis; do
  skopeo copy -q "oci:$WORK/images:$tag" "containers-storage:localhost/veil-example/$tag:$POD" || fail "cannot copy the $tag image into podman's storage"
done

step "veil injector (HTTPS; simulated pods allowed in namespace dev only)"
INJECTOR_PORT=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/injector.key" -out "$WORK/injector.pem" -days 1 \
  -subj /CN=veil-injector -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
"$VEIL" injector --listen "127.0.0.1:$INJECTOR_PORT" --tls-cert "$WORK/injector.pem" --tls-key "$WORK/injector.key" --tee simulated \
  --coordinator "$MESH_ADDR" --launcher-image "localhost/veil-example/redis-veil:$POD" --simulation-namespaces dev >"$WORK/injector.log" 2>&1 &
PIDS+=($!)
wait_until 20 curl -sf --cacert "$WORK/injector.pem" "https://127.0.0.1:$INJECTOR_PORT/healthz" || { cat "$WORK/injector.log"; fail "injector did not start"; }

# An ordinary pod: host network (redis-cli and the coordinator are on loopback), the image's own
# entrypoint (a converted image starts through its launcher).
write_pod() {  # NAME IMAGE LABELLED OUT
  python3 - "$@" <<'PY'
import json, sys
name, image, labelled, out = sys.argv[1:5]
labels = {"app": "redis"}
if labelled == "yes":
    labels["veil.dev/service"] = "cache"
# The image works in /tmp, which a runtime does not provide unless a volume does.
container = {"name": "redis", "image": image, "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}
json.dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
           "spec": {"hostNetwork": True, "restartPolicy": "Never", "containers": [container], "volumes": [{"name": "tmp", "emptyDir": {}}]}},
          open(out, "w"))
PY
}
write_pod "$POD" "localhost/veil-example/redis-veil:$POD" yes "$WORK/pod.json"
result=$(python3 "$VEIL_ROOT/Tests/Scripts/admission.py" "https://127.0.0.1:$INJECTOR_PORT/mutate" "$WORK/injector.pem" dev \
  "$WORK/pod.json" "$WORK/mutated.json")
echo "admission: $result"
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["allowed"] and r["patched"] and not r["repatched"] else 1)' "$result" \
  || fail "the injector did not mutate the labelled pod exactly once"

step "podman kube play of the mutated pod (runc)"
mkdir -p "$WORK/key" && cp "$SIM_KEY" "$WORK/key/key.pem"
python3 - "$WORK/mutated.json" "$WORK/mutated-podman.yaml" "$WORK" <<'PY'
import json, sys, yaml
pod, out, work = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
for volume in pod["spec"]["volumes"]:
    if volume.get("emptyDir", {}).get("medium") == "Memory":
        path = f"{work}/memory-{volume['name']}"
        __import__("os").makedirs(path, exist_ok=True)
        volume.pop("emptyDir"); volume["hostPath"] = {"path": path, "type": "Directory"}
    elif "secret" in volume:
        volume.pop("secret"); volume["hostPath"] = {"path": f"{work}/key", "type": "Directory"}
yaml.safe_dump(pod, open(out, "w"))
PY
python3 - "$WORK/root.pem" "$WORK/configmap.yaml" <<'PY'
import sys, yaml
yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "veil-root"}, "data": {"root.pem": open(sys.argv[1]).read()}},
               open(sys.argv[2], "w"))
PY
PODS_UP+=("$POD")
podman kube play --configmap "$WORK/configmap.yaml" "$WORK/mutated-podman.yaml" >"$WORK/play.log" 2>&1 || { cat "$WORK/play.log"; fail "podman kube play failed"; }
wait_until 60 redis-cli --tls --cacert "$WORK/root.pem" -p "$REDIS_PORT" PING \
  || { podman logs "$POD-redis" 2>&1 | tail -20; fail "the mutated pod's redis did not come up"; }
answer=$(redis-cli --tls --cacert "$WORK/root.pem" -p "$REDIS_PORT" PING)
echo "redis-cli --tls --cacert root.pem PING: $answer"
[ "$answer" = "PONG" ] || fail "expected PONG, got '$answer'"
podman logs "$POD-redis" >"$WORK/pod.log" 2>&1 || true
grep -q "cache activated" "$WORK/pod.log" || { cat "$WORK/pod.log"; fail "the pod's launcher did not activate"; }
podman pod rm -f "$POD" >/dev/null

step "the same pod without the label: unchanged, runs the plain image"
PLAIN_PORT=$(free_port)
write_pod "$POD-plain" "localhost/veil-example/redis:$POD" no "$WORK/plain.json"
python3 - "$WORK/plain.json" "$PLAIN_PORT" <<'PY'
import json, sys
pod = json.load(open(sys.argv[1]))
pod["spec"]["containers"][0]["command"] = ["/usr/bin/redis-server", "--port", sys.argv[2], "--bind", "127.0.0.1", "--save", "", "--dir", "/tmp"]
json.dump(pod, open(sys.argv[1], "w"))
PY
result=$(python3 "$VEIL_ROOT/Tests/Scripts/admission.py" "https://127.0.0.1:$INJECTOR_PORT/mutate" "$WORK/injector.pem" dev \
  "$WORK/plain.json" "$WORK/plain-out.json")
echo "admission: $result"
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["allowed"] and not r["patched"] else 1)' "$result" \
  || fail "the injector changed an unlabelled pod"
python3 -c 'import json,sys,yaml; yaml.safe_dump(json.load(open(sys.argv[1])), open(sys.argv[2], "w"))' "$WORK/plain-out.json" "$WORK/plain.yaml"
PODS_UP+=("$POD-plain")
podman kube play "$WORK/plain.yaml" >"$WORK/play-plain.log" 2>&1 || { cat "$WORK/play-plain.log"; fail "podman kube play (plain) failed"; }
wait_until 60 redis-cli -p "$PLAIN_PORT" PING || { podman logs "$POD-plain-redis" 2>&1 | tail -20; fail "the plain pod did not come up"; }
echo "plain pod: $(redis-cli -p "$PLAIN_PORT" PING)"
echo "OK: the injector's pod ran under podman kube play and answered PONG over TLS with the attested root"
