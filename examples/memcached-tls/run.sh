#!/usr/bin/env bash
# Debian's memcached with its own TLS (`memcached -Z`), provisioned directly: the coordinator
# writes its service certificate, key and the root to a memory filesystem, memcached requires
# a client certificate under that root. A Python service with its own provisioned certificate
# stores and reads a value; a client without a certificate is refused by memcached itself.
source "$(dirname "$0")/../lib.sh"
command -v memcached >/dev/null || fail "memcached is not installed (apt-get install -y memcached)"
HERE=$(cd "$(dirname "$0")" && pwd)

build_veil
start_coordinator

STORE_PORT=$(free_port)
CLIENT_CODE=$(cat "$HERE/client.py")
step "measuring memcached and the Python client, setting the manifest"
render_manifest "$HERE/manifest.template.json" "$WORK/manifest.json" \
  "MEMCACHED_MEASUREMENT=$("$VEIL" measure --service store -- memcached)" \
  "CLIENT_MEASUREMENT=$("$VEIL" measure --service reporter -- /usr/bin/python3 -c "$CLIENT_CODE")" \
  "STORE_PORT=$STORE_PORT"
"$VEIL" manifest set "$WORK/manifest.json"

step "launching memcached -Z as service store (TLS on 127.0.0.1:$STORE_PORT, client certificate required)"
launch store "$WORK/store.log" memcached
wait_until 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$STORE_PORT" || { cat "$WORK/store.log"; fail "memcached did not come up"; }

step "a client without a certificate is refused by memcached"
if echo version | timeout 10 openssl s_client -quiet -connect "127.0.0.1:$STORE_PORT" -CAfile "$WORK/root.pem" 2>"$WORK/anonymous.err" | grep -q VERSION; then
  fail "an anonymous client reached memcached"
fi
echo "refused: $(grep -o 'alert[^:]*' "$WORK/anonymous.err" | head -1)"

step "running the Python client as service reporter, TLS straight to memcached"
veil_launch reporter -- /usr/bin/python3 -c "$CLIENT_CODE" | tee "$WORK/client.out"
grep -q "^TLSv1.3 STORED|VALUE report 0 9|quarterly|END|$" "$WORK/client.out" || { cat "$WORK/store.log"; fail "the client did not read its value back"; }
echo "OK: memcached -Z served a Python client over mutual TLS with certificates provisioned by the coordinator"
