#!/usr/bin/env python3
"""Connections that never finish a request, against one coordinator listener.

  connection_flood.py flood HOST PORT PER_KIND SOURCES WAIT
      Opens PER_KIND connections of each kind — silent TCP, a partial TLS record (half a
      ClientHello), and TLS handshakes followed by a request head that never ends — spread over
      SOURCES loopback source addresses (127.0.0.2 …). Prints "opened N" once all are open,
      then waits up to WAIT seconds for the server to close each and prints one JSON line:
      {"opened", "closedByServer", "stillOpen", "seconds"} (seconds: the last closure, from
      when the last connection was opened).
  connection_flood.py cap HOST PORT CAP SOURCE OTHER
      Opens CAP + 10 silent connections from SOURCE and reports how many the server closed
      within 2 s, then whether a request from OTHER is answered: {"closedAtOnce", "otherStatus"}.
  connection_flood.py get HOST PORT SOURCE
      One request from SOURCE: {"status"} (0 when the connection was refused).
"""
import json
import selectors
import socket
import ssl
import sys
import time


def connect(host, port, source):
    sock = socket.create_connection((host, port), timeout=10, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def tls_context():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def closed_by_server(sockets, wait):
    """Waits until the server closes each socket; returns (closed, seconds of the last closure)."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    start, last, closed = time.monotonic(), 0.0, 0
    while closed < len(sockets) and time.monotonic() - start < wait:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            try:
                data = sock.recv(4096)
            except ssl.SSLWantReadError:
                continue
            except (ConnectionError, ssl.SSLError, OSError):
                data = b""
            if data:
                continue  # an alert or an error answer; the close follows
            selector.unregister(sock)
            closed += 1
            last = time.monotonic() - start
    return closed, last


def flood(host, port, per_kind, sources, wait):
    addresses = [f"127.0.0.{2 + i}" for i in range(sources)]
    context = tls_context()
    sockets = []
    for index in range(per_kind * 3):
        source = addresses[index % len(addresses)]
        kind = index % 3
        sock = connect(host, port, source)
        if kind == 1:
            sock.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]))  # a ClientHello cut short
        elif kind == 2:
            sock = context.wrap_socket(sock)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: coordinator\r\nX-Slow: ")
        sockets.append(sock)
    print(f"opened {len(sockets)}", flush=True)
    closed, last = closed_by_server(sockets, wait)
    print(json.dumps({"opened": len(sockets), "closedByServer": closed, "stillOpen": len(sockets) - closed, "seconds": round(last, 2)}), flush=True)


def healthz(host, port, source):
    """The status of GET /healthz from `source`, 0 when the connection is refused."""
    try:
        with tls_context().wrap_socket(connect(host, port, source)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: coordinator\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
    except (ConnectionError, ssl.SSLError, OSError):
        return 0
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def cap(host, port, limit, source, other):
    sockets = [connect(host, port, source) for _ in range(limit + 10)]
    closed, _ = closed_by_server(sockets, 2)
    print(json.dumps({"closedAtOnce": closed, "otherStatus": healthz(host, port, other)}), flush=True)


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "flood":
        flood(host, port, int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
    elif mode == "cap":
        cap(host, port, int(sys.argv[4]), sys.argv[5], sys.argv[6])
    else:
        print(json.dumps({"status": healthz(host, port, sys.argv[4])}), flush=True)
