#!/usr/bin/env python3
"""Sends a pod to a mutating webhook as a real AdmissionReview v1, applies the returned JSONPatch
with the `jsonpatch` library (as the API server would), then sends the mutated pod again.

usage: admission.py URL CA_FILE NAMESPACE POD_JSON OUT_JSON
prints {"allowed", "message", "patched", "repatched"}; writes the mutated pod to OUT_JSON.
"""
import base64, json, ssl, sys, urllib.request, uuid

import jsonpatch

url, ca, namespace, pod_path, out_path = sys.argv[1:6]
context = ssl.create_default_context(cafile=ca)


def review(pod):
    body = {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": namespace,
            "operation": "CREATE", "userInfo": {"username": "test"}, "object": pod, "dryRun": False,
        },
    }
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context) as response:
        answer = json.load(response)
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
