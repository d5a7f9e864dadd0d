#!/usr/bin/env python3
"""Records RabbitMQ 3.10's answers for the TLS and EXTERNAL cases of tests/tls.rs and
interop/pika/test_tls.py into tests/fixtures/rabbitmq-3.10/tls.json.

Makes a test CA (interop/tls/certs.py), starts a reference node with an AMQPS listener,
verify_peer, fail_if_no_peer_cert = false, EXTERNAL enabled (rabbitmq_auth_mechanism_ssl), runs
the cases, stops the node; then again with ssl_cert_login_from = distinguished_name.
    /tmp/venv-tls/bin/python interop/record/tls.py 5716 5676 > tests/fixtures/rabbitmq-3.10/tls.json
(the venv needs pika and cryptography). Every read is bounded in time; nothing sleeps.
"""
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

import pika

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tls"))
import certs  # noqa: E402

PORT, TLS_PORT = int(sys.argv[1]), int(sys.argv[2])
REF = os.path.join(HERE, "..", "rabbitmq-ref.sh")
DIR = certs.make_all(tempfile.mkdtemp(prefix="rmq-tls-"))


def path(name):
    return os.path.join(DIR, name)


def ctl(*args):
    subprocess.run([REF, "ctl", str(PORT), *args], check=True, capture_output=True)


def start(login_from):
    conf = "\n".join([
        f"listeners.ssl.default = {TLS_PORT}",
        f"ssl_options.cacertfile = {path('ca.pem')}",
        f"ssl_options.certfile = {path('server.pem')}",
        f"ssl_options.keyfile = {path('server.key')}",
        "ssl_options.verify = verify_peer",
        "ssl_options.fail_if_no_peer_cert = false",
        "auth_mechanisms.1 = PLAIN",
        "auth_mechanisms.2 = AMQPLAIN",
        "auth_mechanisms.3 = EXTERNAL",
        f"ssl_cert_login_from = {login_from}",
    ])
    env = dict(os.environ, RMQ_CONF_EXTRA=conf, RMQ_PLUGINS_EXTRA="rabbitmq_auth_mechanism_ssl")
    subprocess.run([REF, "start", str(PORT)], check=True, env=env, stdout=subprocess.DEVNULL)


def context(client=None):
    ctx = ssl.create_default_context(cafile=path("ca.pem"))
    if client:
        ctx.load_cert_chain(path(client + ".pem"), path(client + ".key"))
    return ctx


def read_frame(sock):
    """One frame: (type, channel, payload), or None when the peer closed."""
    head = b""
    while len(head) < 7:
        chunk = sock.recv(7 - len(head))
        if not chunk:
            return None
        head += chunk
    kind, channel, size = struct.unpack(">BHI", head)
    body = b""
    while len(body) < size + 1:
        chunk = sock.recv(size + 1 - len(body))
        if not chunk:
            return None
        body += chunk
    return kind, channel, body[:-1]


def mechanisms(client, tls=True):
    """The mechanisms field of connection.start."""
    raw = socket.create_connection(("127.0.0.1", TLS_PORT if tls else PORT), timeout=5)
    sock = context(client).wrap_socket(raw, server_hostname="localhost") if tls else raw
    with sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        _, _, payload = read_frame(sock)
        # class, method, version major/minor, server-properties table, mechanisms, locales
        off = 4 + 2
        (tlen,) = struct.unpack(">I", payload[off:off + 4])
        off += 4 + tlen
        (mlen,) = struct.unpack(">I", payload[off:off + 4])
        return payload[off + 4:off + 4 + mlen].decode()


def plain_on_tls_port():
    """A plain-text AMQP client on the AMQPS port: what comes back, and how soon it closes."""
    sock = socket.create_connection(("127.0.0.1", TLS_PORT), timeout=30)
    t0 = time.monotonic()
    sock.sendall(b"AMQP\x00\x00\x09\x01")
    got = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return {"received_hex": got.hex(), "closed": "reset",
                    "seconds": round(time.monotonic() - t0, 1)}
        if not chunk:
            break
        got += chunk
    sock.close()
    return {"received_hex": got.hex(), "closed": "eof", "seconds": round(time.monotonic() - t0, 1)}


def pika_login(client, external=True, user="tls-user"):
    creds = pika.credentials.ExternalCredentials() if external else \
        pika.PlainCredentials(user, "secret")
    params = pika.ConnectionParameters(
        "localhost", TLS_PORT, "/", creds, connection_attempts=1, socket_timeout=5,
        ssl_options=pika.SSLOptions(context(client), "localhost"))
    try:
        conn = pika.BlockingConnection(params)
    except Exception as e:  # noqa: BLE001 — recording whatever the client saw
        args = getattr(e, "args", ())
        inner = args[0] if args and isinstance(args[0], Exception) else e
        return {"error": type(e).__name__, "detail": repr(inner)}
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    conn.close()
    return {"ok": True, "declared": bool(q)}


out = {}
start("common_name")
try:
    ctl("add_user", "tls-user", "secret")
    ctl("set_permissions", "-p", "/", "tls-user", ".*", ".*", ".*")
    out["mechanisms_tls_with_client_cert"] = mechanisms("client")
    out["mechanisms_tls_without_client_cert"] = mechanisms(None)
    out["mechanisms_plain_port"] = mechanisms(None, tls=False)
    out["plain_client_on_tls_port"] = plain_on_tls_port()
    out["external_known_user"] = pika_login("client")
    out["external_unknown_user_cn_nobody"] = pika_login("nobody")
    out["external_without_client_cert"] = pika_login(None)
    out["plain_login_over_tls"] = pika_login(None, external=False)
    out["expired_client_cert"] = pika_login("expired")
    out["untrusted_client_cert"] = pika_login("untrusted")
finally:
    subprocess.run([REF, "stop", str(PORT)], check=False)

start("distinguished_name")
try:
    # Which string does RabbitMQ make of the subject C=GB, O=Lagomorph Tests, CN=tls-user?
    for name in ("CN=tls-user,O=Lagomorph Tests,C=GB", "C=GB,O=Lagomorph Tests,CN=tls-user"):
        ctl("add_user", name, "secret")
        ctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
        out["distinguished_name_login_as " + name] = pika_login("client")
        ctl("delete_user", name)
finally:
    subprocess.run([REF, "stop", str(PORT)], check=False)

json.dump(out, sys.stdout, indent=2, sort_keys=True)
print()
