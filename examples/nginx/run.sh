#!/usr/bin/env bash
# Runs Debian's unmodified nginx as a Veil service: its TLS key, certificate and even its
# configuration come from the coordinator; curl verifies it against the attested root.
source "$(dirname "$0")/../lib.sh"
command -v nginx >/dev/null || PATH=$PATH:/usr/sbin
command -v nginx >/dev/null || fail "nginx is not installed (apt-get install -y nginx)"

build_veil
start_coordinator

NGINX_PORT=$(free_port)
step "measuring nginx and setting the manifest"
MEASUREMENT=$("$VEIL" measure --service web -- nginx)
render_manifest "$(dirname "$0")/manifest.template.json" "$WORK/manifest.json" \
  "NGINX_MEASUREMENT=$MEASUREMENT" "NGINX_PORT=$NGINX_PORT"
"$VEIL" manifest set "$WORK/manifest.json"

step "launching nginx under veil launch"
launch web "$WORK/nginx.log" nginx
wait_until 20 curl -sf --cacert "$WORK/root.pem" "https://127.0.0.1:$NGINX_PORT/" || { cat "$WORK/nginx.log"; fail "nginx did not come up"; }

step "curl --cacert root.pem https://127.0.0.1:$NGINX_PORT/"
code=$(curl -s -o "$WORK/body" -w '%{http_code}' --cacert "$WORK/root.pem" "https://127.0.0.1:$NGINX_PORT/")
cat "$WORK/body"
[ "$code" = "200" ] || fail "expected HTTP 200, got $code"
echo "OK: nginx served HTTPS (200) with a certificate chain to the attested root"
