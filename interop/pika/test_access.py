"""Permissions, topic permissions, revocation, user deletion and limits through pika, with
RabbitMQ 3.10's reply texts. Users and permissions are made through the management API at
MANAGEMENT_URL (run.sh exports it; against a RabbitMQ, set it to its management port), so the
same tests run against Lagomorph and RabbitMQ. Skipped when MANAGEMENT_URL is not set."""

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request

import pika
import pytest

from amqp_helpers import AMQP_URL, connection_params, unique

MANAGEMENT_URL = os.environ.get("MANAGEMENT_URL")
pytestmark = pytest.mark.skipif(not MANAGEMENT_URL, reason="MANAGEMENT_URL not set")


def api(method, path, body=None):
    """Calls the management API as guest; returns the status."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(MANAGEMENT_URL + path, data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def q(s):
    return urllib.parse.quote(s, safe="")


def url_for(user, password="p", vhost="/"):
    parsed = urllib.parse.urlparse(AMQP_URL)
    return f"amqp://{user}:{password}@{parsed.hostname}:{parsed.port}/{q(vhost)}"


def set_permissions(user, configure, write, read, vhost="/"):
    body = {"configure": configure, "write": write, "read": read}
    assert api("PUT", f"/api/permissions/{q(vhost)}/{user}", body) in (201, 204)


@pytest.fixture
def user():
    """A user without tags, with password p; deleted afterwards."""
    name = unique("pa-u")
    assert api("PUT", f"/api/users/{name}", {"password": "p", "tags": ""}) == 201
    yield name
    api("DELETE", f"/api/users/{name}")


@pytest.fixture
def objects():
    """Queues and topic exchanges named by the patterns the tests grant."""
    prefix = unique("pa")
    names = {k: f"{prefix}-{k}" for k in ("conf-q", "write-q", "read-q", "other-q",
                                           "read-x", "write-x", "other-x")}
    admin = pika.BlockingConnection(connection_params())
    ch = admin.channel()
    for k, n in names.items():
        if k.endswith("-q"):
            ch.queue_declare(n)
        else:
            ch.exchange_declare(n, "topic")
    yield prefix, names
    ch = admin.channel() if ch.is_closed else ch
    for k, n in names.items():
        if k.endswith("-q"):
            ch.queue_delete(n)
        else:
            ch.exchange_delete(n)
    admin.close()


def refused(fn):
    """Runs fn, expecting a channel or connection close; returns (code, text)."""
    with pytest.raises((pika.exceptions.ChannelClosedByBroker,
                        pika.exceptions.ConnectionClosedByBroker)) as e:
        fn()
    return e.value.reply_code, e.value.reply_text


def text(kind, name, user, vhost="/"):
    return f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'"


def test_each_permission_kind_allows_and_refuses(user, objects):
    prefix, n = objects
    esc = prefix.replace(".", "\\.").replace("-", "\\-")
    set_permissions(user, f"^{esc}-conf.*", f"^{esc}-write.*|^amq\\.default$", f"^{esc}-read.*")
    c = pika.BlockingConnection(pika.URLParameters(url_for(user)))
    try:
        ch = c.channel()
        ch.queue_declare(f"{prefix}-conf-new")
        ch.queue_delete(f"{prefix}-conf-new")
        assert refused(lambda: ch.queue_declare(n["other-q"] + "-new")) == (
            403, text("queue", n["other-q"] + "-new", user))
        ch = c.channel()
        ch.queue_declare(n["other-q"], passive=True)
        ch.confirm_delivery()
        ch.basic_publish(n["write-x"], "k", b"x")
        ch.basic_publish("", n["other-q"], b"x")
        assert refused(lambda: ch.basic_publish(n["other-x"], "k", b"x")) == (
            403, text("exchange", n["other-x"], user))
        ch = c.channel()
        assert ch.basic_get(n["read-q"], auto_ack=True) == (None, None, None)
        assert refused(lambda: ch.basic_get(n["other-q"])) == (403, text("queue", n["other-q"], user))
        ch = c.channel()
        assert refused(lambda: ch.queue_bind(n["write-q"], n["write-x"], "k")) == (
            403, text("exchange", n["write-x"], user))
    finally:
        if c.is_open:
            c.close()


def test_topic_permissions_expand_the_user_name(user, objects):
    _, n = objects
    set_permissions(user, ".*", ".*", ".*")
    body = {"exchange": "amq.topic", "write": "^{username}\\..*", "read": "^r\\..*"}
    assert api("PUT", f"/api/topic-permissions/%2F/{user}", body) == 201
    c = pika.BlockingConnection(pika.URLParameters(url_for(user)))
    try:
        ch = c.channel()
        ch.confirm_delivery()
        ch.basic_publish("amq.topic", f"{user}.a", b"x")
        assert refused(lambda: ch.basic_publish("amq.topic", "v.a", b"x")) == (
            403, f"ACCESS_REFUSED - access to topic 'v.a' in exchange 'amq.topic' in vhost '/' "
                 f"refused for user '{user}'")
        ch = c.channel()
        ch.queue_bind(n["read-q"], "amq.topic", "r.y")
        assert refused(lambda: ch.queue_bind(n["read-q"], "amq.topic", "x.y"))[0] == 403
    finally:
        if c.is_open:
            c.close()


def test_revoked_permissions_apply_to_an_open_connection(user):
    set_permissions(user, ".*", ".*", ".*")
    c = pika.BlockingConnection(pika.URLParameters(url_for(user)))
    try:
        ch = c.channel()
        name = unique("pa-revoke")
        ch.queue_declare(name, exclusive=True)
        assert api("DELETE", f"/api/permissions/%2F/{user}") == 204
        assert refused(lambda: ch.queue_declare(name + "-2", exclusive=True)) == (
            403, text("queue", name + "-2", user))
        assert c.is_open
    finally:
        if c.is_open:
            c.close()


def test_deleting_a_user_closes_its_connection_with_320(user):
    set_permissions(user, ".*", ".*", ".*")
    c = pika.BlockingConnection(pika.URLParameters(url_for(user)))
    assert api("DELETE", f"/api/users/{user}") == 204

    def wait_closed():
        for _ in range(100):
            c.process_data_events(0.05)
    code, reply = refused(wait_closed)
    assert (code, reply) == (320, f"CONNECTION_FORCED - user '{user}' is deleted")


def test_user_channel_limit(user):
    set_permissions(user, ".*", ".*", ".*")
    assert api("PUT", f"/api/user-limits/{user}/max-channels", {"value": 2}) == 204
    c = pika.BlockingConnection(pika.URLParameters(url_for(user)))
    try:
        c.channel()
        c.channel()
        assert refused(c.channel) == (
            530, f"NOT_ALLOWED - number of channels opened for user '{user}' has reached the "
                 f"maximum allowed user limit of (2)")
    finally:
        if c.is_open:
            c.close()


def test_vhost_without_permissions_is_refused(user):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as e:
        pika.BlockingConnection(pika.URLParameters(url_for(user)))
    assert f"NOT_ALLOWED - access to vhost '/' refused for user '{user}'" in str(e.value)
