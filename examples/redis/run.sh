#!/usr/bin/env bash
# Runs Debian's unmodified redis-server as a Veil service with TLS provisioned by the
# coordinator, then proves it with the real redis-cli against the attested root.
source "$(dirname "$0")/../lib.sh"
command -v redis-server >/dev/null || fail "redis-server is not installed (apt-get install -y redis-server redis-tools)"

build_veil
start_coordinator

REDIS_PORT=$(free_port)
step "measuring redis-server and setting the manifest"
MEASUREMENT=$("$VEIL" measure --service cache -- redis-server)
render_manifest "$(dirname "$0")/manifest.template.json" "$WORK/manifest.json" \
  "REDIS_MEASUREMENT=$MEASUREMENT" "REDIS_PORT=$REDIS_PORT"
"$VEIL" manifest set "$WORK/manifest.json"

step "launching redis-server under veil launch"
launch cache "$WORK/redis.log" redis-server
wait_until 20 redis-cli --tls --cacert "$WORK/root.pem" -p "$REDIS_PORT" PING || { cat "$WORK/redis.log"; fail "redis did not come up"; }

step "redis-cli --tls --cacert root.pem PING"
answer=$(redis-cli --tls --cacert "$WORK/root.pem" -p "$REDIS_PORT" PING)
echo "$answer"
[ "$answer" = "PONG" ] || fail "expected PONG, got '$answer'"
"$VEIL" status
echo "OK: redis-server answered PONG over TLS with a certificate chain to the attested root"
