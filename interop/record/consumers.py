#!/usr/bin/env python3
"""Records RabbitMQ 3.10's answers for priority queues, consumer priorities, single active
consumer, direct reply-to misuse and the consumer acknowledgement timeout into
tests/fixtures/rabbitmq-3.10/consumers.json.

    RMQ_CONF_EXTRA="consumer_timeout = 2000" interop/rabbitmq-ref.sh start 5700 --management
    /tmp/venv-rec/bin/python interop/record/consumers.py 5700 > tests/fixtures/rabbitmq-3.10/consumers.json

With ONLY=name,name... only those cases run (merge their output into the file by hand); the
management cases need --management (HTTP on PORT+10000).
"""
import json
import os
import subprocess
import sys
import time

import pika

PORT = int(sys.argv[1])
REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "rabbitmq-ref.sh")


def ctl(*args):
    return subprocess.run([REF, "ctl", str(PORT), *args], check=True, capture_output=True, text=True).stdout


def conn():
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", PORT, "/", pika.PlainCredentials("guest", "guest"), connection_attempts=1))


def err(e):
    args = getattr(e, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return {"code": args[0], "text": args[1]}
    return {"error": type(e).__name__, "repr": repr(e)}


out = {}
ONLY = [n for n in os.environ.get("ONLY", "").split(",") if n]


def http(path):
    import base64
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{PORT + 10000}{path}")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def case(name, fn):
    if ONLY and name not in ONLY:
        return
    c = conn()
    try:
        r = fn(c, c.channel())
        out[name] = {"ok": True} if r is None else {"ok": True, "result": r}
    except Exception as e:  # noqa: BLE001
        out[name] = err(e)
    finally:
        if c.is_open:
            c.close()


def declare_args(name, args):
    def run(c, ch):
        try:
            ch.queue_declare(name, arguments=args) and None
        finally:
            c2 = conn()
            c2.channel().queue_delete(name)
            c2.close()
    return run


for label, args in [
    ("max_priority_0", {"x-max-priority": 0}),
    ("max_priority_255", {"x-max-priority": 255}),
    ("max_priority_256", {"x-max-priority": 256}),
    ("max_priority_negative", {"x-max-priority": -1}),
    ("max_priority_string", {"x-max-priority": "10"}),
    ("sac_string", {"x-single-active-consumer": "yes"}),
    ("sac_int", {"x-single-active-consumer": 1}),
    ("consumer_timeout_arg_string", {"x-consumer-timeout": "abc"}),
]:
    case("declare_" + label, declare_args("argq-" + label, args))


def redeclare_priority(c, ch):
    ch.queue_declare("prioq", arguments={"x-max-priority": 5})
    try:
        ch.queue_declare("prioq", arguments={"x-max-priority": 6})
    finally:
        c2 = conn()
        c2.channel().queue_delete("prioq")
        c2.close()
case("redeclare_max_priority_different", redeclare_priority)


def priority_order(c, ch):
    ch.queue_declare("prioq2", arguments={"x-max-priority": 3}, auto_delete=False)
    for i, p in enumerate([0, 5, 1, 3, None, 2, 3]):
        props = pika.BasicProperties(priority=p) if p is not None else None
        ch.basic_publish("", "prioq2", f"m{i}-p{p}".encode(), props)
    got = []
    while True:
        m = ch.basic_get("prioq2", auto_ack=True)
        if m[0] is None:
            break
        got.append(m[2].decode())
    ch.queue_delete("prioq2")
    return got
case("priority_delivery_order", priority_order)


def consumer_priority_bad(c, ch):
    ch.queue_declare("cpq", auto_delete=True)
    ch.basic_consume("cpq", lambda *a: None, arguments={"x-priority": "high"})
case("consumer_priority_string", consumer_priority_bad)


def reply_to_publish_without_consumer(c, ch):
    ch.queue_declare("rpcq0", auto_delete=True)
    ch.basic_publish("", "rpcq0", b"req", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    ch.queue_declare("rpcq0", passive=True)
case("reply_to_publish_without_consumer", reply_to_publish_without_consumer)


def reply_to_consume_ack_mode(c, ch):
    ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=False)
case("reply_to_consume_with_acks", reply_to_consume_ack_mode)


def reply_to_consume_twice(c, ch):
    ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True)
    ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True)
case("reply_to_consume_twice", reply_to_consume_twice)


def reply_to_round_trip(c, ch):
    got = {}
    ch.queue_declare("rpcq", auto_delete=True)
    ch.basic_consume("amq.rabbitmq.reply-to", lambda ch_, m, p, b: got.update(reply=b.decode(), rk=m.routing_key, exchange=m.exchange, redelivered=m.redelivered, consumer_tag=m.consumer_tag), auto_ack=True)
    ch.basic_publish("", "rpcq", b"req", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    m = None
    for _ in range(50):
        m = ch.basic_get("rpcq", auto_ack=True)
        if m[0]:
            break
        c.process_data_events(0.05)
    reply_to = m[1].reply_to
    # The server answers on another connection.
    c2 = conn()
    ch2 = c2.channel()
    ch2.confirm_delivery()
    try:
        ch2.basic_publish("", reply_to, b"resp", mandatory=True)
        good = "accepted"
    except Exception as e:  # noqa: BLE001
        good = err(e)
        ch2.basic_publish("", reply_to, b"resp")
    bad = None
    try:
        ch2.basic_publish("", "amq.rabbitmq.reply-to.bogus", b"resp", mandatory=True)
        bad = "accepted (no return)"
    except Exception as e:  # noqa: BLE001
        bad = err(e)
    c2.close()
    for _ in range(50):
        if got:
            break
        c.process_data_events(0.05)
    passive = ch.queue_declare("amq.rabbitmq.reply-to", passive=True).method
    return {"reply_to_prefix": reply_to[:len("amq.rabbitmq.reply-to.")], "reply_to_len": len(reply_to),
            "delivery": got, "reply_publish_mandatory": good, "bogus_reply_publish_mandatory": bad,
            "passive_declare": {"queue": passive.queue, "message_count": passive.message_count, "consumer_count": passive.consumer_count}}
case("reply_to_round_trip", reply_to_round_trip)


def server_caps(c, ch):
    return c._impl.server_capabilities
case("server_capabilities", server_caps)


def sac(c, ch):
    ch.queue_declare("sacq", arguments={"x-single-active-consumer": True})
    seen = []
    t1 = ch.basic_consume("sacq", lambda ch_, m, p, b: seen.append(("c1", b.decode())), auto_ack=True, consumer_tag="c1")
    t2 = ch.basic_consume("sacq", lambda ch_, m, p, b: seen.append(("c2", b.decode())), auto_ack=True, consumer_tag="c2")
    for i in range(3):
        ch.basic_publish("", "sacq", f"a{i}".encode())
    for _ in range(20):
        c.process_data_events(0.05)
    ch.basic_cancel("c1")
    for i in range(3):
        ch.basic_publish("", "sacq", f"b{i}".encode())
    for _ in range(20):
        c.process_data_events(0.05)
    ok = ch.queue_declare("sacq", passive=True).method
    ch.queue_delete("sacq")
    return {"seen": seen, "consumer_count_after_cancel": ok.consumer_count}
case("single_active_consumer_failover", sac)


def sac_exclusive(c, ch):
    ch.queue_declare("sacq2", arguments={"x-single-active-consumer": True}, auto_delete=True)
    ch.basic_consume("sacq2", lambda *a: None, exclusive=True)
case("single_active_consumer_exclusive_consume", sac_exclusive)


def sac_management(c, ch):
    """What management shows of a single-active-consumer queue: the queue's
    single_active_consumer_tag and each consumer's active/activity_status, before and after the
    active one cancels; and a plain queue's consumer."""
    ch.queue_declare("sacm", arguments={"x-single-active-consumer": True})
    ch.queue_declare("plainm")
    ch.basic_consume("sacm", lambda *a: None, consumer_tag="first")
    ch.basic_consume("sacm", lambda *a: None, consumer_tag="second", arguments={"x-priority": 3})
    ch.basic_consume("plainm", lambda *a: None, consumer_tag="other")

    def view():
        # Management's stats are collected every few seconds: wait for both consumers.
        for _ in range(60):
            q = http("/api/queues/%2f/sacm")
            if len(q.get("consumer_details", [])) == q.get("consumers") and q.get("consumers"):
                break
            time.sleep(0.5)
        pick = lambda d: {k: d.get(k) for k in ("consumer_tag", "active", "activity_status", "arguments")}
        return {"single_active_consumer_tag": q.get("single_active_consumer_tag"),
                "consumer_details": sorted((pick(d) for d in q["consumer_details"]), key=lambda d: d["consumer_tag"])}
    before = view()
    plain = http("/api/queues/%2f/plainm")
    listed = sorted(({"consumer_tag": d["consumer_tag"], "active": d.get("active"), "activity_status": d.get("activity_status")}
                     for d in http("/api/consumers") if d["queue"]["name"] in ("sacm", "plainm")),
                    key=lambda d: d["consumer_tag"])
    ch.basic_cancel("first")
    for _ in range(60):
        after = view()
        if after["single_active_consumer_tag"] == "second" and len(after["consumer_details"]) == 1:
            break
        time.sleep(0.5)
    ch.queue_delete("sacm")
    ch.queue_delete("plainm")
    return {"before": before, "after_cancel": after, "api_consumers": listed,
            "plain_queue": {"single_active_consumer_tag": plain.get("single_active_consumer_tag"),
                            "activity_status": [d.get("activity_status") for d in plain["consumer_details"]]}}
case("single_active_consumer_management", sac_management)


def consumer_timeout(c, ch):
    ch.queue_declare("ctq", auto_delete=False)
    ch.basic_publish("", "ctq", b"x")
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("ctq", lambda *a: None, auto_ack=False)
    start = time.time()
    try:
        while time.time() - start < 150:
            c.process_data_events(0.5)
        return "no timeout within 150 s"
    finally:
        c2 = conn()
        ok = c2.channel().queue_declare("ctq", passive=True).method
        out["consumer_timeout_requeued"] = {"message_count": ok.message_count, "seconds": round(time.time() - start)}
        c2.channel().queue_delete("ctq")
        c2.close()


case("consumer_timeout", consumer_timeout)

json.dump(out, sys.stdout, indent=2, sort_keys=True)
print()
