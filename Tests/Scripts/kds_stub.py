#!/usr/bin/env python3
"""AMD KDS on loopback for tests: serves one product's VCEK (for one chip ID) and cert_chain
as https://kdsintf.amd.com does, over plain HTTP, and appends each request path to --log.

usage: kds_stub.py PORT --product Genoa --chip-id HEX --vcek DER --chain PEM [--crl DER] [--log FILE] [--delay-ms N]
GET /vcek/v1/PRODUCT/CHIPID?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=.. -> the VCEK (DER)
GET /vcek/v1/PRODUCT/cert_chain -> the ASK and ARK (PEM)
GET /vcek/v1/PRODUCT/crl -> the --crl file (DER), when given; anything else -> 404.
"""
import argparse, http.server, time, urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--product", required=True)
parser.add_argument("--chip-id", required=True)
parser.add_argument("--vcek", required=True)
parser.add_argument("--chain", required=True)
parser.add_argument("--crl")
parser.add_argument("--log")
parser.add_argument("--delay-ms", type=int, default=0, help="answer VCEK requests this late (a slow KDS)")
options = parser.parse_args()
vcek, chain = open(options.vcek, "rb").read(), open(options.chain, "rb").read()


class KDS(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if options.log:
            with open(options.log, "a") as log:
                log.write(self.path + "\n")
        query = urllib.parse.parse_qs(url.query)
        body = None
        if url.path == f"/vcek/v1/{options.product}/cert_chain":
            body, kind = chain, "application/x-pem-file"
        elif url.path == f"/vcek/v1/{options.product}/crl" and options.crl:
            body, kind = open(options.crl, "rb").read(), "application/pkix-crl"
        elif url.path == f"/vcek/v1/{options.product}/{options.chip_id.lower()}" and all(k in query for k in ("blSPL", "teeSPL", "snpSPL", "ucodeSPL")):
            body, kind = vcek, "application/octet-stream"
            time.sleep(options.delay_ms / 1000)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", options.port), KDS).serve_forever()
