#!/usr/bin/env python3
"""Writes to a coordinator as fast as it answers until the coordinator dies, then prints what
was acknowledged and what was in flight, as JSON on its last line (each acknowledged change
also prints a line "acknowledged" as it happens).

usage: crash_writer.py CLIENT_ADDR ROOT USER_CERT USER_KEY START VEIL_LAUNCH_ARGV_JSON PF_KEY PF_PATH PF_LAUNCH_ARGV_JSON
Changes cycle through: secret `token` set to "vN", package `ver` SecurityVersion N, one
activation of service `app` (MaxActivations) by `veil launch -- /bin/true`, and a protected
file sealed at version N+1 (`veil protect seal`) presented by an activation of service `pf`
(`veil launch --protected-file … -- /bin/true`), which makes the coordinator record that
version. N starts at START.
"""
import base64, http.client, json, ssl, subprocess, sys

address, root, cert, key, start, launch = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), json.loads(sys.argv[6])
pf_key, pf_path, pf_launch = sys.argv[7], sys.argv[8], json.loads(sys.argv[9])
host, port = address.rsplit(":", 1)
context = ssl.create_default_context(cafile=root)
context.load_cert_chain(cert, key)
context.check_hostname = False
state = {"secret": None, "secret_in_flight": None, "version": None, "version_in_flight": None, "activations": 0, "activation_in_flight": 0,
         "pf_version": None, "pf_version_in_flight": None, "changes": 0}


def call(method, path, body):
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    try:
        connection.request(method, path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


n = start
try:
    while True:
        kind = n % 4
        if kind == 0:
            value = f"v{n}"
            state["secret_in_flight"] = value
            status = call("PUT", "/api/v1/secrets/token", {"value": base64.b64encode(value.encode()).decode()})
            if status != 204:
                raise RuntimeError(f"secret set answered {status}")
            state["secret"], state["secret_in_flight"] = value, None
        elif kind == 1:
            state["version_in_flight"] = n
            status = call("POST", "/api/v1/update/packages", {"Packages": {"ver": {"SecurityVersion": n}}})
            if status != 200:
                raise RuntimeError(f"package update answered {status}")
            state["version"], state["version_in_flight"] = n, None
        elif kind == 3:
            version = n + 1
            sealed = f"{pf_path}.v{version}.vpf"
            with open(sealed + ".plain", "w") as plain:
                plain.write(f"records at version {version}\n")
            subprocess.run([launch[0], "protect", "seal", "--key", pf_key, "--path", pf_path, "--version", str(version), sealed + ".plain", sealed],
                           check=True, stdout=subprocess.DEVNULL, timeout=30)
            state["pf_version_in_flight"] = version
            result = subprocess.run(pf_launch + ["--protected-file", f"{sealed}={pf_path}", "--", "/bin/true"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
            if result.returncode != 0:
                raise RuntimeError(f"protected-file launch failed: {result.stderr.decode()[-200:]}")
            state["pf_version"], state["pf_version_in_flight"] = version, None
        else:
            state["activation_in_flight"] = 1
            result = subprocess.run(launch, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
            if result.returncode != 0:
                raise RuntimeError(f"launch failed: {result.stderr.decode()[-200:]}")
            state["activations"] += 1
            state["activation_in_flight"] = 0
        state["changes"] += 1
        # The test kills the coordinator only after the first acknowledged change, so a slow
        # start (Python, TLS) cannot leave a round without writes.
        print("acknowledged", flush=True)
        n += 1
except Exception as error:  # the coordinator was killed: report
    state["stopped_by"] = str(error)[:200]
print(json.dumps(state))
