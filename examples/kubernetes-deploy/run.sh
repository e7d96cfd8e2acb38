#!/usr/bin/env bash
# The rendered deployment, run: Veil's own image built here (`veil image self`, twice: same
# digest), `veil kubernetes render --tee simulated --replicas 1` pointing at it by digest, and
# the rendered etcd, coordinator and injector pod templates run under `podman kube play` with
# the rendered Secrets. Then, as an operator would: attest the coordinator (its measurement is
# the one `veil image self` printed), set a manifest, send an ordinary labelled Redis pod
# through the running injector, play the patched pod (its init container installs the launcher
# from Veil's image) and get PONG over TLS with the attested root.
#
# podman 4.3 is not a kubelet and this machine has no cluster network; what
# Tests/Scripts/podman_pods.py changes for that (host network with the Service names as host
# aliases, volumes as host directories) is all that differs from the rendered objects.
source "$(dirname "$0")/../lib.sh"
require_podman skopeo redis-server redis-cli umoci etcd
for pod in veil-etcd-0 veil-coordinator-0 veil-injector-0; do
  ! podman pod exists "$pod" 2>/dev/null || fail "podman already has a pod $pod (podman pod rm -f $pod)"
done
for port in 2379 2380 4433 2001 8443; do
  ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || fail "port $port is in use: the rendered pods listen on it (host network)"
done

build_veil
WORK=$(mktemp -d /dev/shm/veil-deploy.XXXXXX)
RUN=$$
PODS_UP=()
deploy_cleanup() {
  for pod in "${PODS_UP[@]:-}"; do [ -n "$pod" ] && podman pod rm -f -t 2 "$pod" >/dev/null 2>&1 || true; done
  [ -n "${KEEP_WORK:-}" ] || podman rmi -f "localhost/veil-deploy/etcd:$RUN" "localhost/veil-deploy/redis:$RUN" >/dev/null 2>&1 || true
  [ -n "${VEIL_DIGEST:-}" ] && [ -z "${KEEP_WORK:-}" ] && podman rmi -f "localhost/veil@$VEIL_DIGEST" >/dev/null 2>&1 || true
  cleanup
}
trap deploy_cleanup EXIT

step "veil image self (twice: a reproducible image has one digest)"
"$VEIL" image self --to "oci:$WORK/images:veil" --docker-archive "$WORK/veil.tar" --name localhost/veil --json >"$WORK/self.json"
"$VEIL" image self --to "oci:$WORK/again:veil" --name localhost/veil --json >"$WORK/self-again.json"
VEIL_DIGEST=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["digest"])' "$WORK/self.json")
AGAIN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["digest"])' "$WORK/self-again.json")
MEASUREMENT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["coordinatorMeasurement"])' "$WORK/self.json")
echo "image digest $VEIL_DIGEST, again $AGAIN; coordinator measurement $MEASUREMENT"
[ "$VEIL_DIGEST" = "$AGAIN" ] || fail "two builds of the image differ: $VEIL_DIGEST vs $AGAIN"
skopeo inspect "oci:$WORK/images:veil" | grep -q "\"Digest\": \"$VEIL_DIGEST\"" || fail "skopeo does not read the image"
skopeo inspect "docker-archive:$WORK/veil.tar" >/dev/null || fail "skopeo does not read the docker archive"
podman image load -q -i "$WORK/veil.tar" >"$WORK/load.log" 2>&1 || { cat "$WORK/load.log"; fail "podman image load refused the docker archive"; }
echo "podman image load: $(cat "$WORK/load.log")"
podman rmi -f "localhost/veil:veil" >/dev/null 2>&1 || true
# By digest, as a registry would serve it: the OCI manifest is stored unchanged.
skopeo copy -q "oci:$WORK/images:veil" "containers-storage:localhost/veil@$VEIL_DIGEST" || fail "cannot copy the image into podman's storage"

step "an etcd image from Debian's etcd (the rendered etcd pod runs it)"
build_image "$WORK/images" etcd "$(command -v etcd)" -- /usr/bin/etcd
skopeo copy -q "oci:$WORK/images:etcd" "containers-storage:localhost/veil-deploy/etcd:$RUN"
ETCD_DIGEST=$(skopeo inspect "oci:$WORK/images:etcd" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')

step "veil kubernetes render --tee simulated --replicas 1 --etcd-replicas 1 --image localhost/veil@…"
"$VEIL" kubernetes render --tee simulated --replicas 1 --etcd-replicas 1 --image "localhost/veil@$VEIL_DIGEST" \
  --etcd-image "localhost/veil-deploy/etcd@$ETCD_DIGEST" >"$WORK/rendered.yaml"
python3 "$VEIL_ROOT/Tests/Scripts/podman_pods.py" "$WORK/rendered.yaml" "$WORK" veil-etcd veil-coordinator veil-injector >/dev/null \
  || fail "cannot turn the rendered workloads into pods"
python3 - "$WORK/rendered.yaml" "$WORK/simulation-key.pem" <<'PY'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Secret" and d["metadata"]["name"] == "veil-simulation-key":
        open(sys.argv[2], "w").write(d["stringData"]["key.pem"])
    if d and d["kind"] == "MutatingWebhookConfiguration":
        # The API server trusts the webhook through its caBundle, as this test does.
        import base64
        open(sys.argv[2].replace("simulation-key.pem", "injector-ca.pem"), "wb").write(base64.b64decode(d["webhooks"][0]["clientConfig"]["caBundle"]))
PY

play() {  # NAME: plays WORK/pod-NAME.yaml
  PODS_UP+=("$1")
  podman kube play "$WORK/pod-$2.yaml" >"$WORK/play-$2.log" 2>&1 || { cat "$WORK/play-$2.log"; fail "podman kube play of $2 failed"; }
}
logs() { podman logs "$1" 2>&1 | tail -30; }

step "etcd (rendered StatefulSet veil-etcd, replica 0)"
play veil-etcd-0 veil-etcd
wait_until 60 curl -sf --cacert "$WORK/volumes/veil-etcd-0/tls/ca.crt" --cert "$WORK/volumes/veil-etcd-0/tls/tls.crt" \
  --key "$WORK/volumes/veil-etcd-0/tls/tls.key" --resolve veil-etcd-0.veil-etcd.veil-system.svc:2379:127.0.0.1 \
  https://veil-etcd-0.veil-etcd.veil-system.svc:2379/health || { logs veil-etcd-0-etcd; fail "etcd did not come up"; }

step "coordinator (rendered StatefulSet veil-coordinator, replica 0, on etcd)"
play veil-coordinator-0 veil-coordinator
wait_until 60 curl -sfk https://127.0.0.1:4433/healthz || { logs veil-coordinator-0-coordinator; fail "the coordinator did not come up"; }

step "veil attest: the measurement veil image self printed"
export VEIL_CONFIG_DIR=$WORK/config
"$VEIL" attest --coordinator 127.0.0.1:4433 --allow-simulation --simulation-key "$WORK/simulation-key.pem" --expect "$MEASUREMENT" \
  --root-output "$WORK/root.pem" || fail "the rendered coordinator did not attest as the image's measurement"

step "injector (rendered Deployment veil-injector)"
play veil-injector-0 veil-injector
wait_until 60 curl -sf --cacert "$WORK/injector-ca.pem" --resolve veil-injector.veil-system.svc:8443:127.0.0.1 \
  https://veil-injector.veil-system.svc:8443/healthz || { logs veil-injector-0-injector; fail "the injector did not come up"; }

step "a plain Redis image and the manifest (its process measured as the pod will start it)"
REDIS_PORT=$(free_port)
build_redis_image "$REDIS_PORT" /run/veil
skopeo copy -q "oci:$WORK/images:redis" "containers-storage:localhost/veil-deploy/redis:$RUN"
REDIS_COMMAND=(/usr/bin/redis-server /etc/redis/redis.conf)
python3 - "$WORK/manifest.json" "$("$VEIL" measure --service cache -- "${REDIS_COMMAND[@]}")" <<'PY'
import json, sys
json.dump({"Packages": {"cache": {"Kind": "simulated", "Measurement": sys.argv[2]}},
           "Services": {"cache": {"Package": "cache", "Parameters": {"Files": {
               "/run/veil/tls/cert.pem": "{{ pem .Veil.Service.Cert }}{{ pem .Veil.IntermediateCA.Cert }}",
               "/run/veil/tls/key.pem": "{{ pem .Veil.Service.Private }}",
               "/run/veil/tls/ca.pem": "{{ pem .Veil.RootCA.Cert }}"}}}},
           "Config": {"AllowSimulation": True}}, open(sys.argv[1], "w"), indent=2)
PY
"$VEIL" manifest set "$WORK/manifest.json" --coordinator 127.0.0.1:4433 --root-ca "$WORK/root.pem" >/dev/null || fail "manifest set failed"

step "the labelled pod through the running injector (as the API server sends it)"
python3 - "$WORK/app.json" "$RUN" "$REDIS_PORT" <<'PY'
import json, sys
out, run, port = sys.argv[1:4]
json.dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"redis-{run}", "namespace": "veil-dev",
           "labels": {"app": "redis", "veil.dev/service": "cache"}},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "redis", "image": f"localhost/veil-deploy/redis:{run}",
               "command": ["/usr/bin/redis-server", "/etc/redis/redis.conf"]}]}}, open(out, "w"))
PY
result=$(python3 "$VEIL_ROOT/Tests/Scripts/admission.py" https://127.0.0.1:8443/mutate "$WORK/injector-ca.pem" veil-dev \
  "$WORK/app.json" "$WORK/app-mutated.json" veil-injector.veil-system.svc) || fail "admission failed"
echo "admission: $result"
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["allowed"] and r["patched"] and not r["repatched"] else 1)' "$result" \
  || fail "the injector did not mutate the labelled pod exactly once"
# The operator's objects in the app namespace (docs/kubernetes.md, Install step 4).
python3 - "$WORK/root.pem" "$WORK/simulation-key.pem" "$WORK/app-mutated.json.objects" <<'PY'
import sys, yaml
root, key, out = sys.argv[1:4]
yaml.safe_dump_all([
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "veil-root", "namespace": "veil-dev"}, "data": {"root.pem": open(root).read()}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "veil-simulation-key", "namespace": "veil-dev"}, "stringData": {"key.pem": open(key).read()}},
], open(out, "w"))
PY
python3 "$VEIL_ROOT/Tests/Scripts/podman_pods.py" "$WORK/rendered.yaml" "$WORK" app --pod app "$WORK/app-mutated.json" >/dev/null \
  || fail "cannot turn the mutated pod into a podman pod"

step "podman kube play of the patched pod: init container installs the launcher from Veil's image"
play "redis-$RUN" app
wait_until 90 redis-cli --tls --cacert "$WORK/root.pem" -p "$REDIS_PORT" PING \
  || { logs "redis-$RUN-veil-launcher-install"; logs "redis-$RUN-redis"; fail "the patched pod's redis did not come up"; }
answer=$(redis-cli --tls --cacert "$WORK/root.pem" -p "$REDIS_PORT" PING)
echo "redis-cli --tls --cacert root.pem PING: $answer"
[ "$answer" = "PONG" ] || fail "expected PONG, got '$answer'"
podman logs "redis-$RUN-redis" >"$WORK/app.log" 2>&1 || true
grep -q "cache activated" "$WORK/app.log" || { cat "$WORK/app.log"; fail "the pod's launcher did not activate"; }
echo "OK: the rendered etcd, coordinator and injector ran from Veil's own image; the injected pod answered PONG over TLS with the attested root"
