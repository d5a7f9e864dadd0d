"""Shared helpers for the pika interop suite.

Every wait here is bounded in both attempts and wall-clock time, and waits for data
(a delivery, a reply, a queue count) rather than sleeping a fixed time.
"""

import os
import time
import urllib.parse
import uuid

import pika

#: Broker under test; run.sh always sets it.
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")

#: Upper bound for any single wait on the broker, in seconds.
WAIT_SECONDS = 5.0

#: Upper bound on the number of polls in one wait loop.
MAX_POLLS = 200


def connection_params(url=AMQP_URL):
    """pika parameters for `url` with short, explicit connect timeouts."""
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = WAIT_SECONDS
    params.stack_timeout = 2 * WAIT_SECONDS
    params.blocked_connection_timeout = 2 * WAIT_SECONDS
    return params


def vhost():
    """The virtual host named by AMQP_URL, as the broker spells it in reply texts."""
    return connection_params().virtual_host


def url_with(password=None, vhost_name=None):
    """AMQP_URL with its password and/or vhost replaced."""
    parts = urllib.parse.urlsplit(AMQP_URL)
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0] if userinfo else "guest"
        netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{hostport}"
    path = parts.path
    if vhost_name is not None:
        path = "/" + urllib.parse.quote(vhost_name, safe="")
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def unique(kind):
    """A name no other test (or earlier run) uses."""
    return f"interop-{kind}-{uuid.uuid4().hex}"


def ready_count(ch, queue):
    """Ready (not unacknowledged) message count, via a passive queue.declare."""
    return ch.queue_declare(queue, passive=True).method.message_count


def wait_ready(ch, queue, expected):
    """Poll the ready count until it equals `expected`, bounded; returns the last count.

    Between polls the connection processes I/O for a bounded slice instead of sleeping.
    """
    deadline = time.monotonic() + WAIT_SECONDS
    count = ready_count(ch, queue)
    polls = 1
    while count != expected and polls < MAX_POLLS and time.monotonic() < deadline:
        ch.connection.process_data_events(time_limit=0.02)
        count = ready_count(ch, queue)
        polls += 1
    return count


def get_one(ch, queue, auto_ack=False):
    """basic.get until a message arrives, bounded; returns (method, properties, body).

    Returns (None, None, None) if the queue stays empty for the whole bound.
    """
    deadline = time.monotonic() + WAIT_SECONDS
    for _ in range(MAX_POLLS):
        method, props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if method is not None or time.monotonic() >= deadline:
            return method, props, body
        ch.connection.process_data_events(time_limit=0.02)
    return None, None, None


def consume_n(ch, queue, n, auto_ack=True):
    """Consume until `n` deliveries arrive or the bound runs out; returns [(method, props, body)].

    Uses BlockingChannel.consume with an inactivity timeout, then cancels the consumer
    (pika nacks with requeue anything delivered but not yet handed to us).
    """
    out = []
    deadline = time.monotonic() + WAIT_SECONDS
    for method, props, body in ch.consume(queue, auto_ack=auto_ack, inactivity_timeout=0.1):
        if method is not None:
            out.append((method, props, body))
        if len(out) >= n or time.monotonic() >= deadline:
            break
    ch.cancel()
    return out


def bodies(deliveries):
    """The bodies of `deliveries`, in order."""
    return [body for _, _, body in deliveries]
