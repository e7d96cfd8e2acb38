"""The inference service: an unmodified-Python HTTPS server with mutual TLS. It serves the model
the coordinator unlocked (a protected file, decrypted into memory by the launcher) and answers
POST /predict {"rows": [[30 features], ...]} with {"predictions": [...], "probabilities": [...]}.

Configuration comes from the manifest (environment and files provisioned after attestation):
PORT, MODEL, ALLOWED_CLIENTS (certificate common names), TLS_DIR (cert.pem, key.pem, ca.pem).
"""
import json, os, signal, ssl, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import joblib
import numpy

model = joblib.load(os.environ["MODEL"])
allowed = set(os.environ["ALLOWED_CLIENTS"].split(","))
tls = os.environ["TLS_DIR"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small responses: no 40 ms delayed-ACK stall

    def log_message(self, *args):  # no request logging: rows are patient data
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        subject = dict(pair[0] for pair in self.connection.getpeercert().get("subject", ()))
        if subject.get("commonName") not in allowed:
            return self.reply(403, {"error": "client not allowed"})
        if self.path != "/predict":
            return self.reply(404, {"error": "no such endpoint"})
        try:
            rows = numpy.asarray(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["rows"], dtype=float)
            if rows.ndim != 2 or rows.shape[1] != model.n_features_in_:
                raise ValueError(f"rows must have {model.n_features_in_} features")
        except (KeyError, TypeError, ValueError) as error:
            return self.reply(400, {"error": str(error)})
        self.reply(200, {"predictions": model.predict(rows).tolist(), "probabilities": model.predict_proba(rows)[:, 1].tolist()})


context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.minimum_version = ssl.TLSVersion.TLSv1_3
context.load_cert_chain(f"{tls}/cert.pem", f"{tls}/key.pem")
context.load_verify_locations(f"{tls}/ca.pem")
context.verify_mode = ssl.CERT_REQUIRED
server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
# In a container the server is PID 1, which gets no default SIGTERM action: stop on it.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"inference server listening on 127.0.0.1:{os.environ['PORT']} (model {os.environ['MODEL']})", flush=True)
server.serve_forever()
