#!/usr/bin/env bash
# Debian's unmodified memcached speaks plain TCP on loopback; a Python client service (the
# interpreter from Debian, its code measured as an argument) reaches it over mutual attested
# TLS: the client's egress proxy proves it is service "web", memcached's ingress proxy admits
# only "web" and must itself prove to be "cache". Neither program knows TLS is there.
source "$(dirname "$0")/../lib.sh"
command -v memcached >/dev/null || fail "memcached is not installed (apt-get install -y memcached)"
HERE=$(cd "$(dirname "$0")" && pwd)

build_veil
start_coordinator

CACHE_PLAIN_PORT=$(free_port) CACHE_MESH_PORT=$(free_port) EGRESS_PORT=$(free_port)
CLIENT_CODE=$(cat "$HERE/client.py")
step "measuring memcached and the Python client, setting the manifest"
render_manifest "$HERE/manifest.template.json" "$WORK/manifest.json" \
  "MEMCACHED_MEASUREMENT=$("$VEIL" measure --service cache -- memcached)" \
  "CLIENT_MEASUREMENT=$("$VEIL" measure --service web -- /usr/bin/python3 -c "$CLIENT_CODE")" \
  "CACHE_PLAIN_PORT=$CACHE_PLAIN_PORT" "CACHE_MESH_PORT=$CACHE_MESH_PORT" "EGRESS_PORT=$EGRESS_PORT"
"$VEIL" manifest set "$WORK/manifest.json"

step "launching memcached (plain on 127.0.0.1:$CACHE_PLAIN_PORT, mesh ingress on $CACHE_MESH_PORT)"
launch cache "$WORK/cache.log" memcached
wait_until 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$CACHE_MESH_PORT" || { cat "$WORK/cache.log"; fail "the mesh ingress did not come up"; }

step "a TLS client without a certificate is refused by the ingress"
if echo version | timeout 10 openssl s_client -quiet -connect "127.0.0.1:$CACHE_MESH_PORT" -CAfile "$WORK/root.pem" 2>"$WORK/anonymous.err" | grep -q VERSION; then
  fail "an anonymous client reached memcached"
fi
echo "refused: $(grep -o 'alert[^:]*' "$WORK/anonymous.err" | head -1)"

step "running the Python client as service web (egress 127.0.0.1:$EGRESS_PORT -> cache)"
veil_launch web -- /usr/bin/python3 -c "$CLIENT_CODE" | tee "$WORK/client.out"
grep -q "VALUE greeting 0 22|hello through the mesh|END" "$WORK/client.out" || { cat "$WORK/cache.log"; fail "the client did not read its value back"; }
echo "OK: Python stored and read a value in plain-TCP memcached over mutual attested TLS (web -> cache)"
