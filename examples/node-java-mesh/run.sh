#!/usr/bin/env bash
# A Node `http` server (Debian's node, its code measured as an argument) behind a mesh ingress
# that admits only service "caller"; a single-file Java client (`java Client.java`, the source
# delivered by the manifest as a provisioned file) calls it through its egress. Both speak
# plain HTTP on loopback; between them runs mutual attested TLS 1.3.
source "$(dirname "$0")/../lib.sh"
command -v node >/dev/null || fail "node is not installed (apt-get install -y nodejs)"
command -v java >/dev/null || fail "java is not installed (apt-get install -y openjdk-17-jdk-headless)"
HERE=$(cd "$(dirname "$0")" && pwd)

build_veil
start_coordinator

API_PLAIN_PORT=$(free_port) API_MESH_PORT=$(free_port) EGRESS_PORT=$(free_port)
SERVER_CODE=$(cat "$HERE/server.js")
step "measuring node and java, setting the manifest (the Java source travels in it)"
render_manifest "$HERE/manifest.template.json" "$WORK/manifest.json" \
  "NODE_MEASUREMENT=$("$VEIL" measure --service api -- node -e "$SERVER_CODE")" \
  "JAVA_MEASUREMENT=$("$VEIL" measure --service caller -- java)" \
  "API_PLAIN_PORT=$API_PLAIN_PORT" "API_MESH_PORT=$API_MESH_PORT" "EGRESS_PORT=$EGRESS_PORT"
# The Java source as a JSON string (sed cannot escape it).
python3 - "$WORK/manifest.json" "$HERE/Client.java" <<'PY'
import json, sys
path, source = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read().replace('"@CLIENT_SOURCE@"', json.dumps(source))
open(path, "w").write(text)
PY
"$VEIL" manifest set "$WORK/manifest.json"

step "launching the Node server as service api (plain 127.0.0.1:$API_PLAIN_PORT, mesh ingress $API_MESH_PORT)"
launch api "$WORK/api.log" node -e "$SERVER_CODE"
wait_until 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$API_PLAIN_PORT" || { cat "$WORK/api.log"; fail "node did not come up"; }

step "plain HTTP to the ingress is refused (it speaks only mutual TLS)"
if curl -sf --max-time 5 "http://127.0.0.1:$API_MESH_PORT/" >/dev/null 2>&1; then fail "plain HTTP reached node"; fi
echo "refused"

step "running the Java client as service caller (egress 127.0.0.1:$EGRESS_PORT -> api)"
veil_launch caller -- java | tee "$WORK/caller.out"
grep -q "^200 hello from node, you asked for /orders/42$" "$WORK/caller.out" || { cat "$WORK/api.log"; fail "the Java client did not get node's answer"; }
echo "OK: java Client.java called a Node http server over mutual attested TLS (caller -> api)"
