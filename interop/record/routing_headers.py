#!/usr/bin/env python3
"""Records RabbitMQ 3.10's answers for sender-selected distribution (CC/BCC headers) into
tests/fixtures/rabbitmq-3.10/routing_headers.json.

    interop/rabbitmq-ref.sh start 5802
    python interop/record/routing_headers.py 5802 > tests/fixtures/rabbitmq-3.10/routing_headers.json
"""
import json
import sys

import pika

PORT = int(sys.argv[1])


def conn():
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", PORT, "/", pika.PlainCredentials("guest", "guest"), connection_attempts=1))


def err(e):
    args = getattr(e, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return {"code": args[0], "text": args[1]}
    return {"error": type(e).__name__, "repr": repr(e)}


out = {}


def case(name, fn):
    c = conn()
    try:
        out[name] = {"ok": True, "result": fn(c, c.channel())}
    except Exception as e:  # noqa: BLE001
        out[name] = err(e)
    finally:
        if c.is_open:
            c.close()


def cc_bcc(c, ch):
    ch.confirm_delivery()
    qs = {}
    for k in ["main", "cc", "bcc"]:
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, "amq.direct", "rk." + k)
        qs[k] = q
    ch.basic_publish("amq.direct", "rk.main", b"m", pika.BasicProperties(
        headers={"CC": ["rk.cc"], "BCC": ["rk.bcc"], "keep": "v"}))
    got = {}
    for k, q in qs.items():
        m, p, b = ch.basic_get(q, auto_ack=True)
        got[k] = {"routing_key": m.routing_key, "headers": sorted((p.headers or {}).keys())}
    return got


def cc_not_array(c, ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"x", pika.BasicProperties(headers={"CC": "k"}))
    ch.queue_declare(q, passive=True)


case("cc_bcc_delivery", cc_bcc)
case("cc_header_not_an_array", cc_not_array)
print(json.dumps(out, indent=1, sort_keys=True))
