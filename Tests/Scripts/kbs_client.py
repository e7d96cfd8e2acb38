#!/usr/bin/env python3
"""An independent KBS (Trustee RCAR protocol) client, written from the specification in
../shared/testdata/kbs/spec/ with no Veil code: jwcrypto for keys and JWE, rfc8785 for the
runtime-data hash, `cryptography` to sign Veil's simulated evidence (whose layout is documented
in Sources/VeilAttestation/SimulatedReport.swift).

It runs the scenarios named on the command line against a KBS at --url and prints one JSON
object per scenario: what the server answered (HTTP status, problem type, decrypted resource).
It asserts nothing: the test that runs it holds the expectations.
"""

import argparse
import base64
import hashlib
import http.client
import json
import ssl
import sys
import time
import urllib.parse

import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto import jwe, jwk

PROTOCOL_VERSION = "0.4.0"
SIMULATED_TEE = "veil-simulated"


class KBS:
    def __init__(self, url, cafile):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.context = ssl.create_default_context(cafile=cafile)
        # The coordinator's certificate names it by its DNS names and the veil: URI; the test
        # reaches it by loopback address.
        self.context.check_hostname = False
        self.cookie = None

    def request(self, method, path, body=None, headers=None, cookie=True):
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body).encode()
        if cookie and self.cookie:
            headers["Cookie"] = self.cookie
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        set_cookie = response.getheader("Set-Cookie")
        if set_cookie:
            self.cookie = set_cookie.split(";", 1)[0]
        connection.close()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = {"unparsed": data.decode(errors="replace")}
        return response.status, parsed, response.getheader("Content-Type")

    def auth(self, tee=SIMULATED_TEE, version=PROTOCOL_VERSION, extra_params=""):
        self.cookie = None
        return self.request("POST", "/kbs/v0/auth", {"version": version, "tee": tee, "extra-params": extra_params})


def tee_key(kind, alg=None):
    if kind == "rsa":
        key = jwk.JWK.generate(kty="RSA", size=2048)
        public = {"kty": "RSA", "alg": alg or "RSA-OAEP-256", "n": key["n"], "e": key["e"]}
    else:
        key = jwk.JWK.generate(kty="EC", crv="P-256")
        public = {"kty": "EC", "crv": "P-256", "alg": alg or "ECDH-ES+A256KW", "x": key["x"], "y": key["y"]}
    return key, public


def runtime_data_hash(public_key, nonce, additional="", algorithm="sha384"):
    """The hash (SHA-384 unless negotiated) of the RFC 8785 form of {tee-pubkey, nonce, additional-evidence}, padded to 64."""
    digest = hashlib.new(algorithm, rfc8785.dumps({"tee-pubkey": public_key, "nonce": nonce, "additional-evidence": additional})).digest()
    return digest + bytes(64 - len(digest))


def simulated_evidence(platform_key_pem, measurement_hex, report_data):
    """Veil's veil-simulated-v1 envelope: a JSON report and an ECDSA P-256 signature over it."""
    key = serialization.load_pem_private_key(platform_key_pem, password=None)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    body = {
        "version": 1, "measurement": measurement_hex, "signer": "", "productID": 0, "securityVersion": 0,
        "reportData": report_data.hex(), "debug": False, "simulated": True, "platformKey": hashlib.sha256(spki).hexdigest(),
    }
    report = json.dumps(body, sort_keys=True).encode()
    signature = key.sign(report, ec.ECDSA(hashes.SHA256()))
    return {"report": base64.b64encode(report).decode(), "signature": base64.b64encode(signature).decode()}


def attestation(public_key, nonce, primary, init_data=None):
    payload = {
        "runtime-data": {"nonce": nonce, "tee-pubkey": public_key},
        "tee-evidence": {"primary_evidence": primary, "additional_evidence": ""},
    }
    if init_data is not None:
        payload["init-data"] = init_data
    return payload


def problem(status, body):
    kind = (body or {}).get("type", "") if isinstance(body, dict) else ""
    return {"status": status, "type": kind.rsplit("/", 1)[-1], "detail": (body or {}).get("detail", "") if isinstance(body, dict) else ""}


def decrypt(key, body):
    token = jwe.JWE()
    token.deserialize(json.dumps(body), key=key)
    return token.payload


class Scenarios:
    def __init__(self, args):
        self.args = args
        self.platform_key = open(args.simulation_key, "rb").read()

    def client(self):
        return KBS(self.args.url, self.args.cacert)

    def attested(self, kind="rsa", measurement=None, alg=None):
        """auth → attest with simulated evidence; returns (client, key, public, token, status, body)."""
        kbs = self.client()
        status, challenge, _ = kbs.auth()
        if status != 200:
            return kbs, None, None, None, status, challenge
        key, public = tee_key(kind, alg)
        report_data = runtime_data_hash(public, challenge["nonce"])
        evidence = simulated_evidence(self.platform_key, measurement or self.args.measurement, report_data)
        status, body, _ = kbs.request("POST", "/kbs/v0/attest", attestation(public, challenge["nonce"], evidence))
        return kbs, key, public, (body or {}).get("token"), status, body

    def fetch(self, kbs, key, resource, bearer=None, cookie=True):
        headers = {"Authorization": "Bearer " + bearer} if bearer else {}
        status, body, content_type = kbs.request("GET", "/kbs/v0/resource/" + resource, headers=headers, cookie=cookie)
        if status == 200:
            return {"status": 200, "plaintext": decrypt(key, body).decode(errors="replace"), "alg": json.loads(base64.urlsafe_b64decode(body["protected"] + "==")).get("alg")}
        result = problem(status, body)
        result["contentType"] = content_type
        return result

    def release_rsa(self):
        kbs, key, _, token, status, body = self.attested("rsa")
        if status != 200:
            return problem(status, body)
        result = self.fetch(kbs, key, self.args.resource)
        result["tokenClaims"] = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        result["tokenHeader"] = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        return result

    def release_ec(self):
        kbs, key, _, _, status, body = self.attested("ec")
        return self.fetch(kbs, key, self.args.resource) if status == 200 else problem(status, body)

    def bearer_only(self):
        kbs, key, _, token, status, body = self.attested("ec")
        if status != 200:
            return problem(status, body)
        return self.fetch(self.client(), key, self.args.resource, bearer=token, cookie=False)

    def tampered_token(self):
        kbs, key, _, token, status, body = self.attested("ec")
        if status != 200:
            return problem(status, body)
        header, payload, signature = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["veil.service"] = self.args.other_service
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return self.fetch(self.client(), key, self.args.other_resource, bearer=".".join([header, forged, signature]), cookie=False)

    def unlisted_resource(self):
        kbs, key, _, _, status, body = self.attested("ec")
        return self.fetch(kbs, key, self.args.other_resource) if status == 200 else problem(status, body)

    def unknown_resource(self):
        kbs, key, _, _, status, body = self.attested("ec")
        return self.fetch(kbs, key, "nobody/has/this") if status == 200 else problem(status, body)

    def wrong_service(self):
        """Evidence of another service (its measurement) asking for this service's resource."""
        kbs, key, _, _, status, body = self.attested("ec", measurement=self.args.other_measurement)
        return self.fetch(kbs, key, self.args.resource) if status == 200 else problem(status, body)

    def unknown_measurement(self):
        _, _, _, _, status, body = self.attested("ec", measurement="ab" * 32)
        return problem(status, body)

    def missing_cookie(self):
        _, key, _ = (None, *tee_key("ec"))
        return self.fetch(self.client(), key, self.args.resource, cookie=False)

    def expired_cookie(self):
        kbs, key, _, _, status, body = self.attested("ec")
        if status != 200:
            # Not the refusal under test: the session must expire after a successful attestation.
            return {"error": f"attestation failed before the wait: {status} {body}"}
        time.sleep(self.args.session_lifetime + 1)
        return self.fetch(kbs, key, self.args.resource)

    def replayed_attestation(self):
        """The same Attestation twice on one session, then on a new session (old nonce)."""
        kbs = self.client()
        _, challenge, _ = kbs.auth()
        key, public = tee_key("ec")
        evidence = simulated_evidence(self.platform_key, self.args.measurement, runtime_data_hash(public, challenge["nonce"]))
        payload = attestation(public, challenge["nonce"], evidence)
        first = kbs.request("POST", "/kbs/v0/attest", payload)[0]
        same_session = problem(*kbs.request("POST", "/kbs/v0/attest", payload)[:2])
        kbs.auth()
        new_session = problem(*kbs.request("POST", "/kbs/v0/attest", payload)[:2])
        return {"first": first, "sameSession": same_session, "newSession": new_session}

    def unbound_key(self):
        """Evidence binding one key, the attestation naming another."""
        kbs = self.client()
        _, challenge, _ = kbs.auth()
        _, bound = tee_key("ec")
        _, presented = tee_key("ec")
        evidence = simulated_evidence(self.platform_key, self.args.measurement, runtime_data_hash(bound, challenge["nonce"]))
        return problem(*kbs.request("POST", "/kbs/v0/attest", attestation(presented, challenge["nonce"], evidence))[:2])

    def rsa1_5(self):
        _, _, _, _, status, body = self.attested("rsa", alg="RSA1_5")
        return problem(status, body)

    def wrong_version(self):
        return problem(*self.client().auth(version="0.1.1")[:2])

    def sample_tee(self):
        return problem(*self.client().auth(tee="sample")[:2])

    def real_snp_evidence(self):
        """The SNP fixture (made for another nonce and key): verified up to report-data binding."""
        fixture = json.load(open(self.args.snp_fixture))
        kbs = self.client()
        status, challenge, _ = kbs.auth(tee="snp")
        if status != 200:
            return problem(status, challenge)
        _, public = tee_key("ec")
        genuine = problem(*kbs.request("POST", "/kbs/v0/attest", attestation(public, challenge["nonce"], fixture))[:2])
        fixture["attestation_report"]["measurement"][0] ^= 1
        _, challenge, _ = kbs.auth(tee="snp")
        flipped = problem(*kbs.request("POST", "/kbs/v0/attest", attestation(public, challenge["nonce"], fixture))[:2])
        return {"genuine": genuine, "flippedMeasurement": flipped}

    def azure_evidence(self):
        """Azure SNP vTPM fixtures (made for another nonce): verified up to the binding."""
        outcomes = {}
        for name in ("evidence-v1.json", "evidence-v2.json"):
            fixture = json.load(open(self.args.azure_fixtures + "/" + name))
            kbs = self.client()
            status, challenge, _ = kbs.auth(tee="az-snp-vtpm")
            if status != 200:
                return problem(status, challenge)
            _, public = tee_key("ec")
            outcomes[name] = problem(*kbs.request("POST", "/kbs/v0/attest", attestation(public, challenge["nonce"], fixture))[:2])
        fixture["tpm_quote"]["pcrs"][0] = "11" * 32
        kbs = self.client()
        _, challenge, _ = kbs.auth(tee="az-snp-vtpm")
        outcomes["changedPCR"] = problem(*kbs.request("POST", "/kbs/v0/attest", attestation(public, challenge["nonce"], fixture))[:2])
        return outcomes

    def token(self):
        """auth → attest; the token and the TEE key (private JWK), for a later fetch-bearer."""
        _, key, _, token, status, body = self.attested("ec")
        return {"token": token, "key": key.export(), "status": status} if status == 200 else problem(status, body)

    def fetch_bearer(self):
        """One release with --token and the key in --key-jwk, no session."""
        return self.fetch(self.client(), jwk.JWK.from_json(self.args.key_jwk), self.args.resource, bearer=self.args.token, cookie=False)

    def negotiated_hash(self):
        """supported-hash-algorithms [sha512]: the challenge selects it and the evidence binds a SHA-512 hash; [md5] is refused."""
        kbs = self.client()
        status, challenge, _ = kbs.auth(extra_params={"supported-hash-algorithms": ["sha512"]})
        if status != 200:
            return problem(status, challenge)
        selected = (challenge.get("extra-params") or {}).get("selected-hash-algorithm")
        key, public = tee_key("ec")
        evidence = simulated_evidence(self.platform_key, self.args.measurement, runtime_data_hash(public, challenge["nonce"], algorithm="sha512"))
        status, body, _ = kbs.request("POST", "/kbs/v0/attest", attestation(public, challenge["nonce"], evidence))
        result = self.fetch(kbs, key, self.args.resource) if status == 200 else problem(status, body)
        result["selected"] = selected
        result["unsupported"] = problem(*self.client().auth(extra_params={"supported-hash-algorithms": ["md5"]})[:2])
        return result

    def releases(self):
        """Releases on one session until the first refusal (at most --count)."""
        kbs, key, _, _, status, body = self.attested("ec")
        if status != 200:
            return problem(status, body)
        outcomes = []
        for _ in range(self.args.count):
            outcome = self.fetch(kbs, key, self.args.resource)
            outcomes.append(outcome)
            if outcome["status"] != 200:
                break
        return {"outcomes": outcomes}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--cacert", required=True)
    parser.add_argument("--simulation-key", required=True)
    parser.add_argument("--measurement", required=True)
    parser.add_argument("--other-measurement", default="")
    parser.add_argument("--resource", required=True)
    parser.add_argument("--other-resource", default="")
    parser.add_argument("--other-service", default="")
    parser.add_argument("--snp-fixture", default="")
    parser.add_argument("--azure-fixtures", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--key-jwk", default="")
    parser.add_argument("--session-lifetime", type=float, default=0)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("scenarios", nargs="+")
    args = parser.parse_args()
    scenarios = Scenarios(args)
    for name in args.scenarios:
        try:
            result = getattr(scenarios, name.replace("-", "_"))()
        except Exception as error:  # reported, not hidden: the test fails on it
            result = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps({"scenario": name, "result": result}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
