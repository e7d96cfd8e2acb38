# The "web" service: plain memcached text protocol to a loopback port; the mesh carries it.
import os, socket
host, port = os.environ["CACHE_ADDRESS"].rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=10) as s:
    s.sendall(b"set greeting 0 0 22\r\nhello through the mesh\r\nget greeting\r\n")
    reply = b""
    while not reply.endswith(b"END\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
print(reply.decode().replace("\r\n", "|"))
