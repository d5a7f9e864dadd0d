#!/usr/bin/env python3
"""Records RabbitMQ 3.10's answers for permission, topic-permission, limit and user-deletion
cases into tests/fixtures/rabbitmq-3.10/security.json.

Run against a reference node started by interop/rabbitmq-ref.sh (users and vhosts are set up
through rabbitmqctl via that script):
    interop/rabbitmq-ref.sh start 5715 --management
    /tmp/venv-rec/bin/python interop/record/security.py 5715 > tests/fixtures/rabbitmq-3.10/security.json
"""
import json
import os
import subprocess
import sys

import pika

PORT = int(sys.argv[1])
HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "..", "rabbitmq-ref.sh")


def ctl(*args):
    subprocess.run([REF, "ctl", str(PORT), *args], check=True, capture_output=True)


def conn(user="u", password="p", vhost="/"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", PORT, vhost, pika.PlainCredentials(user, password),
        connection_attempts=1, blocked_connection_timeout=5))


def err(e):
    args = getattr(e, "args", ())
    if len(args) >= 2:
        return {"code": args[0], "text": args[1]}
    return {"error": type(e).__name__, "repr": repr(e)}


out = {}


def case(name, fn):
    try:
        r = fn()
        out[name] = {"ok": True} if r is None else {"ok": True, "result": r}
    except Exception as e:  # noqa: BLE001 — recording whatever RabbitMQ answered
        out[name] = err(e)


# Setup: user u (no tags), vhost /x without permissions for u; in / u gets patterns.
ctl("add_user", "u", "p")
ctl("add_vhost", "/x")
ctl("set_permissions", "-p", "/", "u", "^u-conf.*", "^u-write.*|^amq\\.default$", "^u-read.*")
admin = conn("guest", "guest")
a = admin.channel()
for q in ("u-conf-q", "u-write-q", "u-read-q", "other-q"):
    a.queue_declare(q)
a.exchange_declare("u-read-x", "topic")
a.exchange_declare("u-write-x", "topic")
a.exchange_declare("other-x", "topic")

case("open_vhost_without_permissions", lambda: conn(vhost="/x").close())


def on_channel(fn):
    def run():
        c = conn()
        try:
            return fn(c.channel())
        finally:
            if c.is_open:
                c.close()
    return run


case("queue_declare_allowed", on_channel(lambda ch: ch.queue_declare("u-conf-new") and None))
case("queue_declare_refused", on_channel(lambda ch: ch.queue_declare("other-new")))
case("queue_declare_passive_refused_no_configure_needed",
     on_channel(lambda ch: ch.queue_declare("other-q", passive=True) and None))
case("exchange_declare_refused", on_channel(lambda ch: ch.exchange_declare("other-new-x", "direct")))
case("exchange_declare_passive_other", on_channel(lambda ch: ch.exchange_declare("other-x", "topic", passive=True) and None))
case("queue_delete_refused", on_channel(lambda ch: ch.queue_delete("other-q")))
case("exchange_delete_refused", on_channel(lambda ch: ch.exchange_delete("other-x")))
case("publish_refused_other_exchange", on_channel(
    lambda ch: (ch.confirm_delivery(), ch.basic_publish("other-x", "k", b"x"))[1]))
case("publish_allowed_write_exchange", on_channel(
    lambda ch: (ch.confirm_delivery(), ch.basic_publish("u-write-x", "k", b"x"))[1]))
case("publish_default_exchange_allowed", on_channel(
    lambda ch: (ch.confirm_delivery(), ch.basic_publish("", "other-q", b"x"))[1]))
case("bind_needs_write_on_queue", on_channel(lambda ch: ch.queue_bind("u-read-q", "u-read-x", "k")))
case("bind_needs_read_on_exchange", on_channel(lambda ch: ch.queue_bind("u-write-q", "u-write-x", "k")))
case("consume_refused", on_channel(lambda ch: ch.basic_consume("other-q", lambda *a: None)))
case("get_refused", on_channel(lambda ch: ch.basic_get("other-q")))
case("get_allowed", on_channel(lambda ch: ch.basic_get("u-read-q") and None))
case("purge_refused", on_channel(lambda ch: ch.queue_purge("other-q")))
case("purge_allowed_read", on_channel(lambda ch: ch.queue_purge("u-read-q") and None))
case("declare_amq_prefix", on_channel(lambda ch: ch.queue_declare("amq.u-conf")))

# More permission cases: the default exchange is 'amq.default' for the write pattern;
# exchange.bind needs write on the destination and read on the source; a server-named queue
# needs configure on its generated name; dead-letter and alternate exchanges need write.
ctl("set_permissions", "-p", "/", "u", "^u-conf.*", "^u-write.*", "^u-read.*")
case("publish_default_exchange_refused", on_channel(
    lambda ch: (ch.confirm_delivery(), ch.basic_publish("", "other-q", b"x"))[1]))
case("exchange_bind_allowed", on_channel(
    lambda ch: ch.exchange_bind("u-write-x", "u-read-x", "k") and None))
case("exchange_bind_needs_write_on_destination", on_channel(
    lambda ch: ch.exchange_bind("u-read-x", "u-read-x", "k")))
case("exchange_bind_needs_read_on_source", on_channel(
    lambda ch: ch.exchange_bind("u-write-x", "u-write-x", "k")))
case("queue_unbind_needs_write_on_queue", on_channel(
    lambda ch: ch.queue_unbind("u-read-q", "u-read-x", "k")))


def server_named(ch):
    ch.queue_declare("")
case("server_named_queue_refused", on_channel(server_named))
case("queue_declare_dlx_needs_write", on_channel(lambda ch: ch.queue_declare(
    "u-conf-dlx", arguments={"x-dead-letter-exchange": "other-x"})))
case("queue_declare_dlx_allowed", on_channel(lambda ch: ch.queue_declare(
    "u-conf-dlx2", arguments={"x-dead-letter-exchange": "u-write-x"}) and None))
case("exchange_declare_ae_needs_write", on_channel(lambda ch: ch.exchange_declare(
    "u-conf-ae", "direct", arguments={"alternate-exchange": "other-x"})))
case("exchange_declare_ae_needs_read_on_itself", on_channel(lambda ch: ch.exchange_declare(
    "u-conf-ae2", "direct", arguments={"alternate-exchange": "u-write-x"})))
case("delete_system_exchange", on_channel(lambda ch: ch.exchange_delete("amq.topic")))


def capabilities():
    c = conn()
    try:
        return c._impl.server_capabilities
    finally:
        c.close()
case("server_capabilities", capabilities)


# Revoking permissions on an open connection: the next operation is refused, the connection
# stays open.
def revoke_open():
    ctl("set_permissions", "-p", "/", "u", ".*", ".*", ".*")
    c = conn()
    ch = c.channel()
    ch.queue_declare("u-conf-before")
    ctl("clear_permissions", "-p", "/", "u")
    result = {}
    try:
        ch.queue_declare("u-conf-after")
        result["declare"] = "ok"
    except Exception as e:  # noqa: BLE001
        result["declare"] = err(e)
    result["connection_open"] = c.is_open
    try:
        ch2 = c.channel()
        ch2.basic_publish("", "u-conf-before", b"x")
        c.process_data_events(0.5)
        result["channel_after"] = ch2.is_open
    except Exception as e:  # noqa: BLE001
        result["channel_after"] = err(e)
    if c.is_open:
        c.close()
    return result
case("revoke_permissions_open_connection", revoke_open)
ctl("set_permissions", "-p", "/", "u", "^u-conf.*", "^u-write.*|^amq\\.default$", "^u-read.*")


# Deleting a vhost closes its connections.
def delete_vhost_closes():
    ctl("add_vhost", "/y")
    ctl("set_permissions", "-p", "/y", "guest", ".*", ".*", ".*")
    c = conn("guest", "guest", "/y")
    ch = c.channel()
    ctl("delete_vhost", "/y")
    try:
        for _ in range(50):
            c.process_data_events(0.1)
            if not c.is_open:
                break
        ch.queue_declare("after")
        return "still open"
    except Exception as e:  # noqa: BLE001
        return err(e)
case("delete_vhost_closes_connection", delete_vhost_closes)


def bad_login():
    conn("u", "wrong").close()
case("login_wrong_password", bad_login)

# Topic permissions: u may write routing keys starting with its name to amq.topic, read 'r.*'.
ctl("set_permissions", "-p", "/", "u", ".*", ".*", ".*")
ctl("set_topic_permissions", "-p", "/", "u", "amq.topic", "^{username}\\..*", "^r\\..*")
case("topic_write_allowed", on_channel(
    lambda ch: (ch.confirm_delivery(), ch.basic_publish("amq.topic", "u.a", b"x"))[1]))
case("topic_write_refused", on_channel(
    lambda ch: (ch.confirm_delivery(), ch.basic_publish("amq.topic", "v.a", b"x"))[1]))
case("topic_read_bind_refused", on_channel(lambda ch: ch.queue_bind("u-read-q", "amq.topic", "x.y")))
case("topic_read_bind_allowed", on_channel(lambda ch: ch.queue_bind("u-read-q", "amq.topic", "r.y") and None))
ctl("clear_topic_permissions", "-p", "/", "u")

# Limits.
ctl("set_vhost_limits", "-p", "/", '{"max-queues": 1, "max-connections": 2}')
case("vhost_max_queues", on_channel(lambda ch: (ch.queue_declare("u-q1"), ch.queue_declare("u-q2"))[1]))
ctl("clear_vhost_limits", "-p", "/")
for q in ("u-q1", "u-q2"):
    try:
        a.queue_delete(q)
    except Exception:  # noqa: BLE001
        admin = conn("guest", "guest")
        a = admin.channel()
ctl("set_vhost_limits", "-p", "/", '{"max-connections": 1}')
case("vhost_max_connections", lambda: (conn("guest", "guest"), conn("guest", "guest")) and None)
ctl("clear_vhost_limits", "-p", "/")
admin = conn("guest", "guest")
a = admin.channel()
ctl("set_user_limits", "u", '{"max-connections": 1, "max-channels": 2}')
keep = conn()
case("user_max_connections", lambda: conn().close())
case("user_max_channels", lambda: [keep.channel() for _ in range(3)] and None)
if keep.is_open:
    keep.close()
ctl("clear_user_limits", "u", "all")

# update-secret with an internal-backend user.
def update_secret():
    c = conn()
    c._impl._send_method(0, pika.spec.Connection.UpdateSecret(b"p", "refresh"))
    c.process_data_events(1)
    return c.is_open
case("update_secret_plain", update_secret)


def update_secret_wrong():
    c = conn()
    c._impl._send_method(0, pika.spec.Connection.UpdateSecret(b"wrong", "refresh"))
    try:
        c.process_data_events(1)
        ch = c.channel()
        ch.queue_declare("u-conf-after-secret")
        return {"connection_open": c.is_open}
    except Exception as e:  # noqa: BLE001
        return err(e)
case("update_secret_wrong_password", update_secret_wrong)

# Deleting a user closes its connections.
def delete_user_closes():
    c = conn()
    ch = c.channel()
    ctl("delete_user", "u")
    try:
        for _ in range(50):
            c.process_data_events(0.1)
            if not c.is_open:
                break
        ch.queue_declare("u-conf-after")
        return "still open"
    except Exception as e:  # noqa: BLE001
        return err(e)
case("delete_user_closes_connection", delete_user_closes)

json.dump(out, sys.stdout, indent=2, sort_keys=True)
print()
