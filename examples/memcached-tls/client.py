# The "reporter" service: Python's ssl module with the service certificate the coordinator
# provisioned, talking straight to memcached's own TLS (no proxy); it checks that memcached
# presents service "store" of this coordinator.
import os, socket, ssl
tls = os.environ["TLS_DIR"]
context = ssl.create_default_context(cafile=f"{tls}/ca.pem")
context.check_hostname = False
context.minimum_version = ssl.TLSVersion.TLSv1_3
context.load_cert_chain(f"{tls}/cert.pem", f"{tls}/key.pem")
host, port = os.environ["STORE_ADDRESS"].rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=10) as raw, context.wrap_socket(raw) as s:
    uris = [value for kind, value in s.getpeercert().get("subjectAltName", ()) if kind == "URI"]
    assert any(uri.endswith("/service/store") for uri in uris), f"memcached is not service store: {uris}"
    s.sendall(b"set report 0 0 9\r\nquarterly\r\nget report\r\n")
    reply = b""
    while not reply.endswith(b"END\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    print(s.version(), reply.decode().replace("\r\n", "|"))
