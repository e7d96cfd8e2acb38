"""The clinic's client: sends held-out patient rows over mutual TLS to the inference service,
verifying the service against the pinned root, and checks every prediction against
scikit-learn's own. With --benchmark N, sends N single-row requests on one keep-alive
connection and prints requests/s and p50/p99 latency.

usage: client.py HOST:PORT ROOT_CA CLIENT_CERT CLIENT_KEY HELD_OUT_JSON [--benchmark N]
"""
import http.client, json, socket, ssl, statistics, sys, time

address, root, cert, key, held_out = sys.argv[1:6]
host, port = address.rsplit(":", 1)
context = ssl.create_default_context(cafile=root)
context.load_cert_chain(cert, key)
context.check_hostname = False  # the service is identified by its certificate under the pinned root
connection = http.client.HTTPSConnection(host, int(port), context=context)
connection.connect()
connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
data = json.load(open(held_out))


def predict(rows):
    connection.request("POST", "/predict", body=json.dumps({"rows": rows}), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    body = json.loads(response.read())
    if response.status != 200:
        raise SystemExit(f"service answered {response.status}: {body}")
    return body


if "--benchmark" in sys.argv:
    count = int(sys.argv[sys.argv.index("--benchmark") + 1])
    latencies = []
    start = time.perf_counter()
    for index in range(count):
        begin = time.perf_counter()
        predict([data["rows"][index % len(data["rows"])]])
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - start
    latencies.sort()
    print(json.dumps({"requests_per_second": count / elapsed, "p50_ms": statistics.median(latencies) * 1000,
                      "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}))
else:
    answer = predict(data["rows"])
    mismatches = sum(1 for got, want in zip(answer["predictions"], data["expected"]) if got != want)
    # The probabilities identify the model version: they must be scikit-learn's own, to rounding.
    drift = max(abs(got - want) for got, want in zip(answer["probabilities"], data["probabilities"]))
    accuracy = sum(1 for got, label in zip(answer["predictions"], data["labels"]) if got == label) / len(data["labels"])
    print(f"{len(answer['predictions'])} patients predicted; {mismatches} differ from scikit-learn's own; "
          f"largest probability difference {drift:.1e}; accuracy {accuracy:.3f}")
    sys.exit(1 if mismatches or drift > 1e-9 or len(answer["predictions"]) != len(data["expected"]) else 0)
