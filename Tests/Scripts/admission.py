#!/usr/bin/env python3
"""Sends a pod to a mutating webhook as a real AdmissionReview v1, applies the returned JSONPatch
with the `jsonpatch` library (as the API server would), then sends the mutated pod again.

usage: admission.py URL CA_FILE NAMESPACE POD_JSON OUT_JSON [SERVER_NAME]
SERVER_NAME: the name the certificate is checked against (as the API server checks the webhook
Service's name) when URL's host is another address for it.
prints {"allowed", "message", "patched", "repatched"}; writes the mutated pod to OUT_JSON.
"""
import base64, http.client, json, socket, ssl, sys, urllib.parse, urllib.request, uuid

import jsonpatch

url, ca, namespace, pod_path, out_path = sys.argv[1:6]
context = ssl.create_default_context(cafile=ca)
server_name = sys.argv[6] if len(sys.argv) > 6 else None


class NamedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the URL's address, checks the certificate against server_name."""

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = context.wrap_socket(sock, server_hostname=server_name)


def post(body):
    if server_name is None:
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=context) as response:
            return json.load(response)
    parsed = urllib.parse.urlsplit(url)
    connection = NamedHTTPSConnection(parsed.hostname, parsed.port or 443, timeout=30)
    connection.request("POST", parsed.path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200, (response.status, response.read())
    return json.load(response)


def review(pod):
    body = {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": namespace,
            "operation": "CREATE", "userInfo": {"username": "test"}, "object": pod, "dryRun": False,
        },
    }
    answer = post(json.dumps(body).encode())
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview", answer
    assert answer["response"]["uid"] == body["request"]["uid"], "uid not echoed"
    return answer["response"]


with open(pod_path) as f:
    pod = json.load(f)
first = review(pod)
result = {"allowed": first["allowed"], "message": first.get("status", {}).get("message", ""), "patched": "patch" in first, "repatched": False}
mutated = pod
if "patch" in first:
    assert first["patchType"] == "JSONPatch"
    mutated = jsonpatch.JsonPatch(json.loads(base64.b64decode(first["patch"]))).apply(pod)
    second = review(mutated)
    result["repatched"] = "patch" in second and json.loads(base64.b64decode(second["patch"])) != []
with open(out_path, "w") as f:
    json.dump(mutated, f, indent=1)
print(json.dumps(result))
