"""pika over AMQPS: PLAIN and EXTERNAL logins, and the refusals RabbitMQ 3.10 gives
(tests/fixtures/rabbitmq-3.10/tls.json, recorded by interop/record/tls.py).

run.sh starts the broker with a TLS listener (verify = optional, EXTERNAL enabled, a user
tls-user) and a test CA made by interop/tls/certs.py, and sets AMQPS_URL and TLS_CERTS. Against
an external broker without them, these tests are skipped.
"""
import os
import socket
import ssl
import time
import urllib.parse

import pika
import pytest

from amqp_helpers import WAIT_SECONDS, unique

AMQPS_URL = os.environ.get("AMQPS_URL")
CERTS = os.environ.get("TLS_CERTS")

pytestmark = pytest.mark.skipif(not (AMQPS_URL and CERTS), reason="no AMQPS listener given")

EXTERNAL_REFUSED = ("ACCESS_REFUSED - Login was refused using authentication mechanism "
                    "EXTERNAL. For details see the broker logfile.")


def _port():
    return urllib.parse.urlparse(AMQPS_URL).port


def _context(client=None):
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
    if client:
        ctx.load_cert_chain(os.path.join(CERTS, client + ".pem"),
                            os.path.join(CERTS, client + ".key"))
    return ctx


def _params(client=None, external=False):
    creds = (pika.credentials.ExternalCredentials() if external
             else pika.PlainCredentials("guest", "guest"))
    return pika.ConnectionParameters(
        "localhost", _port(), "/", creds, connection_attempts=1,
        socket_timeout=WAIT_SECONDS, stack_timeout=2 * WAIT_SECONDS,
        ssl_options=pika.SSLOptions(_context(client), "localhost"))


def test_plain_login_publish_and_get_over_tls():
    conn = pika.BlockingConnection(_params())
    try:
        ch = conn.channel()
        q = unique("tls")
        ch.queue_declare(q, auto_delete=True)
        body = os.urandom(200_000)
        ch.basic_publish("", q, body)
        got = None
        deadline = time.monotonic() + WAIT_SECONDS
        while got is None and time.monotonic() < deadline:
            _, _, got = ch.basic_get(q, auto_ack=True)
        assert got == body
    finally:
        conn.close()


def test_external_login_with_client_certificate():
    conn = pika.BlockingConnection(_params("client", external=True))
    try:
        ch = conn.channel()
        assert ch.queue_declare("", exclusive=True).method.queue
    finally:
        conn.close()


@pytest.mark.parametrize("client", ["nobody", None])
def test_external_refused_for_unknown_user_or_no_certificate(client):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as e:
        pika.BlockingConnection(_params(client, external=True))
    assert EXTERNAL_REFUSED in str(e.value)


@pytest.mark.parametrize("client, alert", [("expired", "CERTIFICATE_EXPIRED"),
                                           ("untrusted", "UNKNOWN_CA")])
def test_bad_client_certificates_refused(client, alert):
    with pytest.raises(pika.exceptions.AMQPConnectionError) as e:
        pika.BlockingConnection(_params(client))
    assert alert in repr(e.value)


def test_plain_text_client_on_tls_port_is_closed():
    sock = socket.create_connection(("127.0.0.1", _port()), timeout=WAIT_SECONDS)
    started = time.monotonic()
    sock.sendall(b"AMQP\x00\x00\x09\x01")
    got = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    assert time.monotonic() - started < WAIT_SECONDS
    assert got[:1] == b"\x15", got  # a TLS alert record, as RabbitMQ sends
