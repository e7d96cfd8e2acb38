#!/usr/bin/env python3
"""A double of the Confidential Containers guest API (guest-components api-server-rest, as its
OpenAPI document in ../shared/testdata/kbs/guest-api/ describes it) on loopback for tests:
GET /aa/evidence?runtime_data=...[&encoding=base64] answers the attester evidence in --evidence
(real fixtures: they were made for other report data) and appends the decoded runtime data, in
hex, to --log. Other paths answer 404, other methods 405.

usage: guest_api_double.py PORT --evidence FILE --log FILE
"""
import argparse, base64, http.server, urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--evidence", required=True)
parser.add_argument("--log", required=True)
options = parser.parse_args()
evidence = open(options.evidence, "rb").read()


class GuestAPI(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path != "/aa/evidence":
            self.send_error(404)
            return
        if "runtime_data" not in query:
            self.send_error(400, "runtime_data is required")
            return
        text = query["runtime_data"][0]
        if query.get("encoding", [""])[0] == "base64":
            data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        else:
            data = text.encode()
        with open(options.log, "a") as log:
            log.write(data.hex() + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(evidence)))
        self.end_headers()
        self.wfile.write(evidence)

    def do_POST(self):
        self.send_error(405)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", options.port), GuestAPI).serve_forever()
