#!/usr/bin/env python3
"""Intel PCS v4 on loopback over HTTPS with a certificate of its own CA, as a PCCS is usually
installed: serves one collateral vector (../shared/testdata/attestation/dcap-qvl/*_collateral.json,
the real Intel documents) at the PCS paths with the issuer-chain headers, for SGX and TDX alike.
--tamper-signature changes one character of the TCB info signature (the client must refuse it).

usage: pcs_stub.py PORT --collateral FILE --cert PEM --key PEM [--tamper-signature]
"""
import argparse, http.server, json, ssl, urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--collateral", required=True)
parser.add_argument("--cert", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--tamper-signature", action="store_true")
options = parser.parse_args()
c = json.load(open(options.collateral))
tcb_signature = c["tcb_info_signature"]
if options.tamper_signature:
    tcb_signature = ("0" if tcb_signature[0] != "0" else "1") + tcb_signature[1:]


class PCS(http.server.BaseHTTPRequestHandler):
    def answer(self, body, chain_header=None, chain=None):
        self.send_response(200)
        if chain_header:
            self.send_header(chain_header, urllib.parse.quote(chain, safe=""))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        for tee in ("sgx", "tdx"):
            if path == f"/{tee}/certification/v4/tcb":
                body = '{"tcbInfo":%s,"signature":"%s"}' % (c["tcb_info"], tcb_signature)
                return self.answer(body.encode(), "TCB-Info-Issuer-Chain", c["tcb_info_issuer_chain"])
            if path == f"/{tee}/certification/v4/qe/identity":
                body = '{"enclaveIdentity":%s,"signature":"%s"}' % (c["qe_identity"], c["qe_identity_signature"])
                return self.answer(body.encode(), "SGX-Enclave-Identity-Issuer-Chain", c["qe_identity_issuer_chain"])
        if path == "/sgx/certification/v4/pckcrl":
            return self.answer(bytes.fromhex(c["pck_crl"]), "SGX-PCK-CRL-Issuer-Chain", c["pck_crl_issuer_chain"])
        if path == "/sgx/certification/v4/rootcacrl":
            return self.answer(c["root_ca_crl"].encode())
        self.send_error(404)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", options.port), PCS)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(options.cert, options.key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
