#!/usr/bin/env python3
"""Records what a broker answers in the protocol cases of issue 12 (unbind of missing things,
connection.close handshakes, channel.flow, frame_max slack, the default exchange, channel 0
misuse, tune-ok limits, content-frame errors), as JSON.

    interop/rabbitmq-ref.sh start 5712
    python3 interop/record/compat.py --port 5712 > tests/fixtures/rabbitmq-3.10/compat.json

Run it against Lagomorph (same flags, its port) to compare the two answers case by case:
`python3 interop/record/compat.py --port P --quick | diff tests/fixtures/rabbitmq-3.10/compat.json -`
shows the differences (`--quick` skips the cases that wait for the broker's close timeouts).

Standard library only (see amqp_raw.py). Each case uses fresh connections and unique names.
"""

import argparse
import json
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import amqp_raw as a  # noqa: E402

HOST = "127.0.0.1"
CASES = {}


def case(slow=False):
    def register(f):
        CASES[f.__name__] = (f, slow)
        return f
    return register


def name(kind):
    return f"record-{kind}-{uuid.uuid4().hex[:12]}"


def opened(port, **tune):
    c = a.Conn(HOST, port)
    ok = c.handshake(**tune)
    assert ok and ok["method"] == "connection.open-ok", ok
    c.open_channel(1)
    return c


def cleanup(port, queues=(), exchanges=()):
    c = opened(port)
    for q in queues:
        c.call(a.queue_delete(1, q))
    for x in exchanges:
        c.call(a.exchange_delete(1, x))
    c.send(a.connection_close())
    c.recv_method()
    c.close()


# --- unbind of missing things --------------------------------------------------------------

@case()
def queue_unbind_missing_queue(port):
    x = name("x")
    c = opened(port)
    c.call(a.exchange_declare(1, x))
    got = c.call(a.queue_unbind(1, name("missing-q"), x, "k"))
    c.close()
    cleanup(port, exchanges=[x])
    return {"sent": "queue.unbind of a queue that does not exist from an existing exchange",
            "answer": [got]}


@case()
def queue_unbind_missing_exchange(port):
    q = name("q")
    c = opened(port)
    c.call(a.queue_declare(1, q))
    got = c.call(a.queue_unbind(1, q, name("missing-x"), "k"))
    c.close()
    cleanup(port, queues=[q])
    return {"sent": "queue.unbind of an existing queue from an exchange that does not exist",
            "answer": [got]}


@case()
def queue_unbind_missing_both(port):
    c = opened(port)
    got = c.call(a.queue_unbind(1, name("missing-q"), name("missing-x"), "k"))
    c.close()
    return {"sent": "queue.unbind where neither queue nor exchange exists", "answer": [got]}


@case()
def queue_unbind_not_bound(port):
    q, x = name("q"), name("x")
    c = opened(port)
    c.call(a.queue_declare(1, q))
    c.call(a.exchange_declare(1, x))
    got = c.call(a.queue_unbind(1, q, x, "k"))
    c.close()
    cleanup(port, queues=[q], exchanges=[x])
    return {"sent": "queue.unbind of an existing queue and exchange that are not bound",
            "answer": [got]}


@case()
def queue_unbind_after_queue_deleted(port):
    q, x = name("q"), name("x")
    c = opened(port)
    c.call(a.queue_declare(1, q))
    c.call(a.exchange_declare(1, x))
    c.call(a.queue_bind(1, q, x, "k"))
    c.call(a.queue_delete(1, q))
    got = c.call(a.queue_unbind(1, q, x, "k"))
    c.close()
    cleanup(port, exchanges=[x])
    return {"sent": "queue.bind, queue.delete, then queue.unbind of that binding",
            "answer": [got]}


@case()
def queue_unbind_default_exchange(port):
    q = name("q")
    c = opened(port)
    c.call(a.queue_declare(1, q))
    got = c.call(a.queue_unbind(1, q, "", q))
    c.close()
    cleanup(port, queues=[q])
    return {"sent": "queue.unbind from the default exchange", "answer": [got]}


@case()
def queue_unbind_exclusive_of_another_connection(port):
    q, x = name("q"), name("x")
    owner = opened(port)
    owner.call(a.queue_declare(1, q, exclusive=True))
    owner.call(a.exchange_declare(1, x))
    owner.call(a.queue_bind(1, q, x, "k"))
    c = opened(port)
    got = c.call(a.queue_unbind(1, q, x, "k"))
    c.close()
    owner.close()
    cleanup(port, exchanges=[x])
    return {"sent": "queue.unbind of another connection's exclusive queue (bound)",
            "answer": [got]}


@case()
def exchange_unbind_missing_destination(port):
    x = name("x")
    c = opened(port)
    c.call(a.exchange_declare(1, x))
    got = c.call(a.exchange_unbind(1, name("missing-x"), x, "k"))
    c.close()
    cleanup(port, exchanges=[x])
    return {"sent": "exchange.unbind whose destination does not exist", "answer": [got]}


@case()
def exchange_unbind_missing_source(port):
    x = name("x")
    c = opened(port)
    c.call(a.exchange_declare(1, x))
    got = c.call(a.exchange_unbind(1, x, name("missing-x"), "k"))
    c.close()
    cleanup(port, exchanges=[x])
    return {"sent": "exchange.unbind whose source does not exist", "answer": [got]}


@case()
def exchange_unbind_not_bound(port):
    x1, x2 = name("x"), name("x")
    c = opened(port)
    c.call(a.exchange_declare(1, x1))
    c.call(a.exchange_declare(1, x2))
    got = c.call(a.exchange_unbind(1, x1, x2, "k"))
    c.close()
    cleanup(port, exchanges=[x1, x2])
    return {"sent": "exchange.unbind of two existing exchanges that are not bound",
            "answer": [got]}


@case()
def queue_bind_missing_queue_still_not_found(port):
    x = name("x")
    c = opened(port)
    c.call(a.exchange_declare(1, x))
    got = c.call(a.queue_bind(1, name("missing-q"), x, "k"))
    c.close()
    cleanup(port, exchanges=[x])
    return {"sent": "queue.bind of a missing queue (bind, unlike unbind, still fails)",
            "answer": [got]}


# --- connection.close ----------------------------------------------------------------------

def client_close(port, heartbeat, wait):
    q = name("q")
    c = opened(port, heartbeat=heartbeat)
    c.call(a.queue_declare(1, q))
    c.mark()
    # close, then publishes the client had queued behind it, in one write.
    c.send(a.connection_close() + a.publish(1, "", q, b"late") * 50)
    first = c.recv_method()
    after_close_ok = c.try_send(a.publish(1, "", q, b"later") * 200 + a.heartbeat())
    rest = c.collect(wait)
    c.close()
    cleanup(port, queues=[q])
    return {"sent": f"heartbeat {heartbeat}; connection.close followed in the same write by 50 "
                    "publishes; after close-ok 200 more publishes; then the client keeps the "
                    "socket open",
            "answer": [first] + rest, "write_after_close_ok": after_close_ok}


@case(slow=True)
def client_close_keeps_reading(port):
    return client_close(port, heartbeat=0, wait=40)


@case(slow=True)
def client_close_keeps_reading_heartbeat_5(port):
    return client_close(port, heartbeat=5, wait=15)


@case()
def client_close_then_client_closes_socket(port):
    c = opened(port)
    c.mark()
    c.send(a.connection_close())
    got = c.recv_method()
    c.close()
    return {"sent": "connection.close; the client closes its socket after close-ok",
            "answer": [got]}


def provoke_server_close(port, **tune):
    """A connection that the broker closed (second channel.open on channel 1)."""
    c = opened(port, **tune)
    c.send(a.channel_open(1))
    got = c.recv_method()
    assert got and got["method"] == "connection.close", got
    return c, got


@case()
def server_close_ignores_all_but_close_ok(port):
    c, close = provoke_server_close(port)
    c.mark()
    c.send(a.channel_open(2) + a.queue_declare(1, name("q")) + a.publish(1, "", "k", b"x")
           + a.heartbeat() + a.channel_flow(1, True) + a.exchange_declare(3, name("x")))
    ignored = c.collect(2)
    c.send(a.connection_close_ok())
    after = c.collect(10)
    c.close()
    return {"sent": "a second channel.open on channel 1 (the broker closes); then channel.open, "
                    "queue.declare, a publish, a heartbeat, channel.flow, exchange.declare; "
                    "then connection.close-ok",
            "answer": [close], "before_close_ok": ignored, "after_close_ok": after}


@case()
def server_close_then_client_close(port):
    c, close = provoke_server_close(port)
    c.mark()
    c.send(a.connection_close())
    got = c.collect(10)
    c.close()
    return {"sent": "the broker sent connection.close; the client answers connection.close "
                    "(both closed at once)",
            "answer": [close], "after_client_close": got}


@case(slow=True)
def server_close_without_close_ok(port):
    c, close = provoke_server_close(port)
    c.mark()
    got = c.collect(40)
    c.close()
    return {"sent": "the broker sent connection.close; the client never answers",
            "answer": [close] + got}


# --- channel.flow, default exchange, frame_max ---------------------------------------------

@case()
def channel_flow_active_false(port):
    c = opened(port)
    c.mark()
    got = c.call(a.channel_flow(1, False))
    rest = c.collect(3) if got and got["method"] == "connection.close" else []
    c.close()
    return {"sent": "channel.flow active=false", "answer": [got] + rest}


@case()
def channel_flow_active_true(port):
    c = opened(port)
    got = c.call(a.channel_flow(1, True))
    c.close()
    return {"sent": "channel.flow active=true", "answer": [got]}


@case()
def passive_declare_of_default_exchange(port):
    c = opened(port)
    got = c.call(a.exchange_declare(1, "", passive=True))
    c.close()
    return {"sent": "exchange.declare passive=true of \"\"", "answer": [got]}


@case()
def declare_of_default_exchange(port):
    c = opened(port)
    got = c.call(a.exchange_declare(1, ""))
    c.close()
    return {"sent": "exchange.declare passive=false of \"\"", "answer": [got]}


@case()
def frame_max_payload_equal_to_frame_max(port):
    q = name("q")
    c = opened(port, frame_max=4096)
    c.call(a.queue_declare(1, q))
    data = b"x" * 4096
    c.send(a.basic_publish(1, "", q) + a.content_header(1, len(data)) + a.body(1, data))
    got = c.call(a.method(1, 50, 10, b"\0\0" + a.shortstr(q) + a.bits(True) + a.table()))
    c.close()
    cleanup(port, queues=[q])
    return {"sent": "frame_max 4096; a body frame with a 4096-byte payload (4104 bytes whole); "
                    "then a passive queue.declare",
            "answer": [got]}


@case()
def frame_max_payload_over_frame_max(port):
    c = opened(port, frame_max=4096)
    data = b"x" * 4097
    c.mark()
    c.send(a.basic_publish(1, "", "k") + a.content_header(1, len(data)) + a.body(1, data))
    got = c.collect(3)
    c.close()
    return {"sent": "frame_max 4096; a body frame with a 4097-byte payload",
            "answer": got}


@case()
def frame_max_method_over_frame_max(port):
    c = opened(port, frame_max=4096)
    c.mark()
    huge = a.method(1, 50, 10, b"\0\0" + a.shortstr("q") + a.bits(False) + a.longstr(b"\0" * 4100))
    c.send(huge)
    got = c.collect(3)
    c.close()
    return {"sent": "frame_max 4096; a method frame with a 4113-byte payload", "answer": got}


# --- channel 0 -----------------------------------------------------------------------------

def on_channel_0(port, data, what):
    c = opened(port)
    c.mark()
    c.send(data)
    got = c.collect(3)
    c.close()
    return {"sent": what, "answer": got}


for _name, _data, _what in [
    ("basic_publish_on_channel_0", a.basic_publish(0, "", "k"), "basic.publish on channel 0"),
    ("basic_publish_with_content_on_channel_0", a.publish(0, "", "k", b"x"),
     "basic.publish, content header and body on channel 0"),
    ("channel_open_on_channel_0", a.channel_open(0), "channel.open on channel 0"),
    ("queue_declare_on_channel_0", a.queue_declare(0, "record-q-on-0"), "queue.declare on channel 0"),
    ("content_header_on_channel_0", a.content_header(0, 1), "a content header on channel 0"),
    ("body_on_channel_0", a.body(0, b"x"), "a body frame on channel 0"),
]:
    CASES[_name] = (lambda port, d=_data, w=_what: on_channel_0(port, d, w), False)


# --- tune-ok -------------------------------------------------------------------------------

def tune(port, what, **values):
    c = a.Conn(HOST, port)
    c.mark()
    got = c.handshake(**values)
    rest = c.collect(3)
    c.close()
    return {"sent": what, "offered": {k: c.tune[k] for k in ("channel_max", "frame_max",
                                                                "heartbeat")},
            "answer": [got] + rest}


for _name, _what, _values in [
    ("tune_ok_frame_max_0", "tune-ok frame_max 0", {"frame_max": 0}),
    ("tune_ok_frame_max_above_offer", "tune-ok frame_max 131073 (offer + 1)",
     {"frame_max": 131073}),
    ("tune_ok_frame_max_below_minimum", "tune-ok frame_max 1024", {"frame_max": 1024}),
    ("tune_ok_channel_max_0", "tune-ok channel_max 0", {"channel_max": 0}),
    ("tune_ok_channel_max_above_offer", "tune-ok channel_max 2048 (offer + 1)",
     {"channel_max": 2048}),
    ("tune_ok_below_offer", "tune-ok channel_max 10, frame_max 8192",
     {"channel_max": 10, "frame_max": 8192}),
]:
    CASES[_name] = (lambda port, w=_what, v=_values: tune(port, w, **v), False)


# --- content frames ------------------------------------------------------------------------

def content(port, data, what):
    c = opened(port)
    c.mark()
    c.send(data)
    got = c.collect(3)
    c.close()
    return {"sent": what, "answer": got}


for _name, _data, _what in [
    ("method_instead_of_content_header", a.basic_publish(1, "", "k") + a.queue_declare(1, "q"),
     "basic.publish then queue.declare instead of its content header"),
    ("method_instead_of_content_body",
     a.basic_publish(1, "", "k") + a.content_header(1, 10) + a.queue_declare(1, "q"),
     "basic.publish, a content header of 10 bytes, then queue.declare"),
    ("body_without_publish", a.body(1, b"x"), "a body frame on an open channel with no publish"),
    ("header_without_publish", a.content_header(1, 1), "a content header with no publish"),
    ("body_longer_than_header_says",
     a.basic_publish(1, "", "k") + a.content_header(1, 5) + a.body(1, b"0123456789"),
     "basic.publish, content header of 5 bytes, a 10-byte body"),
    ("header_of_another_class",
     a.basic_publish(1, "", "k") + a.content_header(1, 1, class_id=50),
     "basic.publish, then a content header of class 50"),
    ("body_on_unopened_channel", a.body(5, b"x"), "a body frame on channel 5, never opened"),
    ("header_on_unopened_channel", a.content_header(5, 1),
     "a content header on channel 5, never opened"),
    ("publish_on_unopened_channel", a.basic_publish(5, "", "k"),
     "basic.publish on channel 5, never opened"),
    ("unknown_frame_type", a.frame(9, 0, b""), "a frame of type 9"),
    ("bad_frame_end", a.heartbeat()[:-1] + b"\x00", "a heartbeat ending in 0x00"),
    ("heartbeat_on_channel_1", a.frame(a.FRAME_HEARTBEAT, 1, b""),
     "a heartbeat frame on channel 1"),
]:
    CASES[_name] = (lambda port, d=_data, w=_what: content(port, d, w), False)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--quick", action="store_true", help="skip cases that wait for timeouts")
    p.add_argument("--only", help="run the cases whose names contain this")
    args = p.parse_args()
    c = a.Conn(HOST, args.port)
    c.send(a.PROTOCOL_HEADER)
    start = c.recv_method()
    c.close()
    out = {"broker": f"{start['product']} {start['version']}",
           "recorded_by": "interop/record/compat.py", "cases": {}}
    for n, (f, slow) in CASES.items():
        if (args.quick and slow) or (args.only and args.only not in n):
            continue
        print(f"case {n}", file=sys.stderr)
        try:
            out["cases"][n] = f(args.port)
        except Exception as e:  # a broken case is recorded, not fatal
            out["cases"][n] = {"error": repr(e)}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
