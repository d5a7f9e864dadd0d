#!/usr/bin/env python3
"""Records RabbitMQ 3.10's answers for queue arguments (checks and equivalence), message TTL,
per-message expiration, queue expiry, dead-lettering (x-death headers field by field, with
their AMQP types), length limits and overflow modes, the quorum-queue delivery limit and
x-delivery-count, and the policy / operator-policy management API, into
tests/fixtures/rabbitmq-3.10/queues.json.

    interop/rabbitmq-ref.sh start 5713 --management
    python3 -m venv /tmp/venv-rec && /tmp/venv-rec/bin/pip install pika==1.4.4
    /tmp/venv-rec/bin/python interop/record/queues.py 5713 > tests/fixtures/rabbitmq-3.10/queues.json

Header tables are recorded as lists of [name, {"type": tag, "value": ...}] in wire order, so
types (l vs I, T) and order can be compared; `time` values are recorded as they were, and
`time_minus_publish` says how many seconds after the publish they were.
"""
import base64
import json
import sys
import time
import urllib.error
import urllib.request

import pika
import pika.data

PORT = int(sys.argv[1])
HTTP = PORT + 10000
out = {}


def conn():
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", PORT, "/", pika.PlainCredentials("guest", "guest"), connection_attempts=1))


def err(e):
    args = getattr(e, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return {"code": args[0], "text": args[1]}
    return {"error": type(e).__name__, "repr": repr(e)}


# Header values with their wire types: pika's decoder wrapped, installed only while reading
# message headers (the handshake decodes tables too).
_plain_decode = pika.data.decode_value


def _jsonable(v):
    if isinstance(v, dict):
        return [[k, x] for k, x in v.items()]
    if isinstance(v, list):
        return list(v)
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if hasattr(v, "timestamp"):
        return int(v.replace(tzinfo=__import__("datetime").timezone.utc).timestamp())
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def _typed_decode(encoded, offset):
    kind = encoded[offset:offset + 1].decode()
    value, end = _plain_decode(encoded, offset)
    return {"type": kind, "value": _jsonable(value)}, end


class typed_headers:
    def __enter__(self):
        pika.data.decode_value = _typed_decode

    def __exit__(self, *a):
        pika.data.decode_value = _plain_decode


def case(name, fn):
    c = conn()
    try:
        r = fn(c, c.channel())
        out[name] = {"ok": True} if r is None else {"ok": True, "result": r}
    except Exception as e:  # noqa: BLE001
        out[name] = err(e)
    finally:
        pika.data.decode_value = _plain_decode
        if c.is_open:
            c.close()


def cleanup(*queues, exchanges=()):
    c = conn()
    ch = c.channel()
    for q in queues:
        ch.queue_delete(q)
    for x in exchanges:
        ch.exchange_delete(x)
    c.close()


def get_typed(ch, queue, tries=100):
    """basic.get (no ack) until a message comes, with typed headers."""
    with typed_headers():
        for _ in range(tries):
            m, props, body = ch.basic_get(queue, auto_ack=True)
            if m is not None:
                h = props.headers
                return {
                    "body": body.decode(),
                    "exchange": m.exchange,
                    "routing_key": m.routing_key,
                    "redelivered": m.redelivered,
                    "expiration": props.expiration,
                    "delivery_mode": props.delivery_mode,
                    "headers": None if h is None else [[k, v] for k, v in h.items()],
                }
            time.sleep(0.05)
    return None


# --- arguments: checks on declare --------------------------------------------------------------

def declare(name, args):
    def run(c, ch):
        try:
            ch.queue_declare(name, arguments=args)
        finally:
            cleanup(name)
    return run


for label, args in [
    ("ttl_negative", {"x-message-ttl": -1}),
    ("ttl_string", {"x-message-ttl": "1000"}),
    ("ttl_2_pow_32", {"x-message-ttl": 4294967296}),
    ("ttl_ten_years", {"x-message-ttl": 315360000000}),
    ("ttl_too_large", {"x-message-ttl": 315360000001}),
    ("ttl_zero", {"x-message-ttl": 0}),
    ("ttl_float", {"x-message-ttl": 1.5}),
    ("expires_zero", {"x-expires": 0}),
    ("expires_negative", {"x-expires": -5}),
    ("expires_string", {"x-expires": "x"}),
    ("dlx_int", {"x-dead-letter-exchange": 5}),
    ("dlrk_without_dlx", {"x-dead-letter-routing-key": "k"}),
    ("dlrk_int", {"x-dead-letter-exchange": "x", "x-dead-letter-routing-key": 5}),
    ("max_length_negative", {"x-max-length": -1}),
    ("max_length_string", {"x-max-length": "10"}),
    ("max_length_bytes_negative", {"x-max-length-bytes": -1}),
    ("overflow_unknown", {"x-overflow": "nope"}),
    ("overflow_int", {"x-overflow": 1}),
    ("delivery_limit_classic_negative", {"x-delivery-limit": -1}),
    ("delivery_limit_classic", {"x-delivery-limit": 5}),
    ("two_bad_ttl_and_max_length", {"x-max-length": -2, "x-message-ttl": -1}),
    ("unknown_x_arg", {"x-whatever": "kept"}),
]:
    case("declare_" + label, declare("args-" + label, args))


def redeclare(name, first, second):
    def run(c, ch):
        ch.queue_declare(name, arguments=first)
        try:
            ch.queue_declare(name, arguments=second)
        finally:
            cleanup(name)
    return run


for label, first, second in [
    ("ttl_changed", {"x-message-ttl": 1000}, {"x-message-ttl": 2000}),
    ("ttl_removed", {"x-message-ttl": 1000}, {}),
    ("ttl_added", {}, {"x-message-ttl": 1000}),
    ("ttl_same_value_other_int_type", {"x-message-ttl": 1000}, {"x-message-ttl": 2 ** 40 - 2 ** 40 + 1000}),
    ("dlx_changed", {"x-dead-letter-exchange": "a"}, {"x-dead-letter-exchange": "b"}),
    ("max_length_changed", {"x-max-length": 1}, {"x-max-length": 2}),
    ("overflow_changed", {"x-overflow": "drop-head"}, {"x-overflow": "reject-publish"}),
    ("expires_changed", {"x-expires": 1000}, {"x-expires": 2000}),
    ("unknown_changed", {"x-whatever": 1}, {"x-whatever": 2}),
]:
    case("redeclare_" + label, redeclare("redeclare-" + label, first, second))


def redeclare_long_vs_int(c, ch):
    # pika sends ints that fit in 32 bits as 'I'; a table value built by hand forces 'l'.
    ch.queue_declare("redeclare-long", arguments={"x-message-ttl": 1000})
    try:
        real = pika.data.encode_value

        def long_ints(pieces, value):
            if isinstance(value, int) and not isinstance(value, bool) and value == 1000:
                pieces.append(b"l" + (1000).to_bytes(8, "big"))
                return 9
            return real(pieces, value)
        pika.data.encode_value = long_ints
        try:
            ch.queue_declare("redeclare-long", arguments={"x-message-ttl": 1000})
        finally:
            pika.data.encode_value = real
    finally:
        cleanup("redeclare-long")
case("redeclare_ttl_long_vs_signedint_same_value", redeclare_long_vs_int)


# --- per-message expiration ----------------------------------------------------------------------

def publish_expiration(value):
    def run(c, ch):
        ch.queue_declare("exp-q", auto_delete=False)
        try:
            ch.basic_publish("", "exp-q", b"x", pika.BasicProperties(expiration=value))
            ch.queue_declare("exp-q", passive=True)
        finally:
            cleanup("exp-q")
    return run


for label, value in [("foo", "foo"), ("negative", "-1"), ("suffix", "10ms"), ("2_pow_32", "4294967296"),
                     ("too_large", "315360000001"),
                     ("plus", "+5"), ("space", " 5"), ("empty", ""), ("zero", "0")]:
    case("expiration_" + label, publish_expiration(value))


# --- TTL -------------------------------------------------------------------------------------------

def ttl_zero(c, ch):
    ch.queue_declare("ttl0", arguments={"x-message-ttl": 0})
    try:
        ch.basic_publish("", "ttl0", b"nobody")
        time.sleep(0.2)
        left_without_consumer = ch.queue_declare("ttl0", passive=True).method.message_count
        got = []
        ch.basic_consume("ttl0", lambda ch_, m, p, b: got.append(b.decode()), auto_ack=True)
        ch.basic_publish("", "ttl0", b"taken")
        for _ in range(20):
            c.process_data_events(0.05)
        return {"left_without_consumer": left_without_consumer, "delivered_with_consumer": got}
    finally:
        cleanup("ttl0")
case("ttl_zero", ttl_zero)


def ttl_lower_wins(c, ch):
    ch.queue_declare("ttl-low", arguments={"x-message-ttl": 300})
    try:
        ch.basic_publish("", "ttl-low", b"long-msg-ttl", pika.BasicProperties(expiration="60000"))
        ch.basic_publish("", "ttl-low", b"short-msg-ttl", pika.BasicProperties(expiration="100"))
        time.sleep(0.5)
        n = ch.queue_declare("ttl-low", passive=True).method.message_count
        return {"left_after_500ms": n}
    finally:
        cleanup("ttl-low")
case("ttl_lower_of_queue_and_message_wins", ttl_lower_wins)


def ttl_head_only(c, ch):
    # A short per-message TTL behind a long one: counted until it reaches the head, never
    # delivered once expired.
    ch.queue_declare("ttl-head")
    try:
        ch.basic_publish("", "ttl-head", b"long", pika.BasicProperties(expiration="60000"))
        ch.basic_publish("", "ttl-head", b"short", pika.BasicProperties(expiration="50"))
        time.sleep(0.3)
        n = ch.queue_declare("ttl-head", passive=True).method.message_count
        first = ch.basic_get("ttl-head", auto_ack=True)[2]
        second = ch.basic_get("ttl-head", auto_ack=True)
        return {"count_before_get": n, "first_get": first.decode(),
                "second_get": None if second[0] is None else second[2].decode()}
    finally:
        cleanup("ttl-head")
case("ttl_expires_from_the_head_only", ttl_head_only)


# --- dead-lettering ---------------------------------------------------------------------------------

def dl_expired(c, ch):
    ch.exchange_declare("dlx-rec", "fanout")
    ch.queue_declare("dlq-rec")
    ch.queue_bind("dlq-rec", "dlx-rec")
    ch.queue_declare("src-ttl", arguments={"x-message-ttl": 100, "x-dead-letter-exchange": "dlx-rec"})
    try:
        t = int(time.time())
        ch.queue_bind("src-ttl", "amq.direct", "rk-orig")
        ch.queue_bind("src-ttl", "amq.direct", "cc-key")
        ch.basic_publish("amq.direct", "rk-orig", b"m", pika.BasicProperties(
            headers={"zeta": 1, "alpha": "a", "CC": ["cc-key"]}, expiration="5000", delivery_mode=2))
        time.sleep(0.5)
        got = get_typed(ch, "dlq-rec")
        got2 = get_typed(ch, "dlq-rec", tries=5)
        return {"publish_time": t, "first": got, "second_copy_from_cc_binding": got2}
    finally:
        cleanup("src-ttl", "dlq-rec", exchanges=["dlx-rec"])
case("dead_letter_expired_with_cc_and_expiration", dl_expired)


def dl_rejected_with_routing_key(c, ch):
    ch.queue_declare("dlq-rk")
    ch.queue_declare("src-rej", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq-rk"})
    try:
        ch.basic_publish("", "src-rej", b"r", pika.BasicProperties(headers={"CC": ["x"], "BCC": ["y"], "k": "v"}))
        m = None
        for _ in range(50):
            m = ch.basic_get("src-rej", auto_ack=False)
            if m[0]:
                break
            time.sleep(0.05)
        ch.basic_reject(m[0].delivery_tag, requeue=False)
        return get_typed(ch, "dlq-rk")
    finally:
        cleanup("src-rej", "dlq-rk")
case("dead_letter_rejected_with_routing_key", dl_rejected_with_routing_key)


def dl_rejected_twice(c, ch):
    ch.queue_declare("src-loop", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "src-loop"})
    try:
        ch.basic_publish("", "src-loop", b"again")
        for _ in range(2):
            m = None
            for _ in range(50):
                m = ch.basic_get("src-loop", auto_ack=False)
                if m[0]:
                    break
                time.sleep(0.05)
            ch.basic_nack(m[0].delivery_tag, requeue=False)
        return get_typed(ch, "src-loop")
    finally:
        cleanup("src-loop")
case("dead_letter_rejected_twice_through_the_same_queue", dl_rejected_twice)


def dl_two_hops(c, ch):
    ch.queue_declare("hop3")
    ch.queue_declare("hop2", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "hop3"})
    ch.queue_declare("hop1", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "hop2"})
    try:
        ch.basic_publish("", "hop1", b"hop", pika.BasicProperties(headers={"h": 1}))
        time.sleep(0.5)
        return get_typed(ch, "hop3")
    finally:
        cleanup("hop1", "hop2", "hop3")
case("dead_letter_two_hops", dl_two_hops)


def dl_cycle(c, ch):
    ch.queue_declare("cyc-a", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "cyc-b"})
    ch.queue_declare("cyc-b", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "cyc-a"})
    try:
        ch.basic_publish("", "cyc-a", b"cycle")
        time.sleep(0.6)
        a = ch.queue_declare("cyc-a", passive=True).method.message_count
        b = ch.queue_declare("cyc-b", passive=True).method.message_count
        return {"a": a, "b": b}
    finally:
        cleanup("cyc-a", "cyc-b")
case("dead_letter_cycle_of_expiries_is_dropped", dl_cycle)


def dl_self(c, ch):
    ch.queue_declare("self-ttl", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "self-ttl"})
    try:
        ch.basic_publish("", "self-ttl", b"self")
        time.sleep(0.4)
        return {"left": ch.queue_declare("self-ttl", passive=True).method.message_count}
    finally:
        cleanup("self-ttl")
case("dead_letter_to_itself_on_expiry_is_dropped", dl_self)


def dl_missing_exchange(c, ch):
    ch.queue_declare("src-missing", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "no-such-x"})
    try:
        ch.basic_publish("", "src-missing", b"lost")
        time.sleep(0.3)
        return {"left": ch.queue_declare("src-missing", passive=True).method.message_count}
    finally:
        cleanup("src-missing")
case("dead_letter_missing_exchange_drops", dl_missing_exchange)


# --- length limits ------------------------------------------------------------------------------------

def drop_head(c, ch):
    ch.queue_declare("dlq-max")
    ch.queue_declare("max-dh", arguments={"x-max-length": 2, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq-max"})
    try:
        for b in ["a", "b", "c", "d"]:
            ch.basic_publish("", "max-dh", b.encode())
        kept = [ch.basic_get("max-dh", auto_ack=True)[2].decode() for _ in range(2)]
        first_dead = get_typed(ch, "dlq-max")
        second_dead = get_typed(ch, "dlq-max")
        return {"kept": kept, "dead": [first_dead, second_dead]}
    finally:
        cleanup("max-dh", "dlq-max")
case("max_length_drop_head", drop_head)


def max_bytes(c, ch):
    ch.queue_declare("max-bytes", arguments={"x-max-length-bytes": 10})
    try:
        for b in ["12345", "67890", "abc"]:
            ch.basic_publish("", "max-bytes", b.encode())
        time.sleep(0.3)
        n = ch.queue_declare("max-bytes", passive=True).method.message_count
        kept = []
        for _ in range(n):
            kept.append(ch.basic_get("max-bytes", auto_ack=True)[2].decode())
        return {"kept": kept}
    finally:
        cleanup("max-bytes")
case("max_length_bytes_drop_head", max_bytes)


def reject_publish(dlx):
    def run(c, ch):
        args = {"x-max-length": 1, "x-overflow": "reject-publish-dlx" if dlx else "reject-publish"}
        if dlx:
            ch.queue_declare("rp-dlq")
            args.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "rp-dlq"})
        ch.queue_declare("rp", arguments=args)
        try:
            ch.basic_publish("", "rp", b"first")
            ch.basic_publish("", "rp", b"silently-refused")
            time.sleep(0.3)  # publishes reach the queue process apart from the passive declare
            n_plain = ch.queue_declare("rp", passive=True).method.message_count
            ch.confirm_delivery()
            try:
                ch.basic_publish("", "rp", b"nacked")
                confirm = "ack"
            except pika.exceptions.NackError:
                confirm = "nack"
            res = {"count_after_plain_publishes": n_plain, "confirm_when_full": confirm,
                   "count": ch.queue_declare("rp", passive=True).method.message_count}
            if dlx:
                res["dead"] = [get_typed(ch, "rp-dlq"), get_typed(ch, "rp-dlq", tries=5)]
            return res
        finally:
            cleanup("rp", "rp-dlq")
    return run
case("overflow_reject_publish", reject_publish(False))
case("overflow_reject_publish_dlx", reject_publish(True))


def reject_publish_with_consumer(c, ch):
    # max-length 0: is a message for a waiting consumer refused too?
    ch.queue_declare("rp0", arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    try:
        got = []
        ch.basic_consume("rp0", lambda ch_, m, p, b: got.append(b.decode()), auto_ack=True)
        ch.confirm_delivery()
        try:
            ch.basic_publish("", "rp0", b"to-consumer")
            confirm = "ack"
        except pika.exceptions.NackError:
            confirm = "nack"
        for _ in range(20):
            c.process_data_events(0.05)
        return {"confirm": confirm, "delivered": got}
    finally:
        cleanup("rp0")
case("overflow_reject_publish_max_length_0_with_consumer", reject_publish_with_consumer)


def drop_head_zero_with_consumer(c, ch):
    ch.queue_declare("dh0", arguments={"x-max-length": 0})
    try:
        got = []
        ch.basic_publish("", "dh0", b"nobody")
        time.sleep(0.3)
        n = ch.queue_declare("dh0", passive=True).method.message_count
        ch.basic_consume("dh0", lambda ch_, m, p, b: got.append(b.decode()), auto_ack=True)
        ch.basic_publish("", "dh0", b"to-consumer")
        for _ in range(20):
            c.process_data_events(0.05)
        return {"count_without_consumer": n, "delivered": got}
    finally:
        cleanup("dh0")
case("max_length_0_drop_head_with_consumer", drop_head_zero_with_consumer)


# --- x-expires ------------------------------------------------------------------------------------------

def expires(c, ch):
    ch.queue_declare("exp-queue", arguments={"x-expires": 300})
    time.sleep(0.8)
    try:
        ch.queue_declare("exp-queue", passive=True)
        return "still there"
    except Exception as e:  # noqa: BLE001
        return err(e)
case("queue_expires_when_unused", expires)


def expires_consumer(c, ch):
    ch.queue_declare("exp-consumed", arguments={"x-expires": 300})
    tag = ch.basic_consume("exp-consumed", lambda *a: None, auto_ack=True)
    for _ in range(16):
        c.process_data_events(0.05)
    ch.queue_declare("exp-consumed", passive=True)
    ch.basic_cancel(tag)
    time.sleep(0.8)
    try:
        ch.queue_declare("exp-consumed", passive=True)
        return "still there"
    except Exception as e:  # noqa: BLE001
        return {"after_cancel": err(e)}
case("queue_expires_after_its_last_consumer", expires_consumer)


# --- delivery limit (quorum queues in RabbitMQ) ----------------------------------------------------------

def quorum_delivery_limit(c, ch):
    ch.queue_declare("qq-dlq", durable=True)
    ch.queue_declare("qq", durable=True, arguments={
        "x-queue-type": "quorum", "x-delivery-limit": 1,
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "qq-dlq"})
    try:
        ch.basic_publish("", "qq", b"poison", pika.BasicProperties(delivery_mode=2))
        seen = []
        for _ in range(3):
            with typed_headers():
                m = None
                for _ in range(100):
                    m = ch.basic_get("qq", auto_ack=False)
                    if m[0]:
                        break
                    time.sleep(0.05)
            if m[0] is None:
                seen.append(None)
                break
            seen.append({"redelivered": m[0].redelivered,
                         "headers": None if m[1].headers is None else [[k, v] for k, v in m[1].headers.items()]})
            ch.basic_nack(m[0].delivery_tag, requeue=True)
        time.sleep(0.3)
        return {"deliveries": seen, "dead": get_typed(ch, "qq-dlq", tries=40)}
    finally:
        cleanup("qq", "qq-dlq")
case("quorum_delivery_limit_and_count", quorum_delivery_limit)


# --- policies (management API) -----------------------------------------------------------------------------

def api(method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{HTTP}/api{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req) as r:
            text = r.read().decode()
            return {"status": r.status, "body": json.loads(text) if text else None}
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        return {"status": e.code, "body": json.loads(text) if text else None}


policies = {}
for label, kind, body in [
    ("ttl_negative", "policies", {"pattern": "^q", "definition": {"message-ttl": -1}}),
    ("unknown_key", "policies", {"pattern": "^q", "definition": {"foo": 1}}),
    ("unknown_and_bad_key", "policies", {"pattern": "^q", "definition": {"foo": 1, "max-length": -2}}),
    ("ttl_string_and_bad_max_length", "policies", {"pattern": "^q", "definition": {"message-ttl": "x", "max-length": -2}}),
    ("float_max_length", "policies", {"pattern": "^q", "definition": {"max-length": 1.5}}),
    ("dlx_int", "policies", {"pattern": "^q", "definition": {"dead-letter-exchange": 5}}),
    ("bad_overflow", "policies", {"pattern": "^q", "definition": {"overflow": "x"}}),
    ("expires_zero", "policies", {"pattern": "^q", "definition": {"expires": 0}}),
    ("delivery_limit_negative", "policies", {"pattern": "^q", "definition": {"delivery-limit": -1}}),
    ("empty_definition", "policies", {"pattern": "^q", "definition": {}}),
    ("no_pattern", "policies", {"definition": {"message-ttl": 1}}),
    ("bad_pattern", "policies", {"pattern": "(", "definition": {"message-ttl": 1}}),
    ("bad_apply_to", "policies", {"pattern": "^q", "apply-to": "foo", "definition": {"message-ttl": 1}}),
    ("bad_priority", "policies", {"pattern": "^q", "priority": "x", "definition": {"message-ttl": 1}}),
    ("ha_and_queue_mode_accepted", "policies", {"pattern": "^zz-never", "definition": {"ha-mode": "all", "queue-mode": "lazy"}}),
    ("op_dlx_not_allowed", "operator-policies", {"pattern": "^q", "definition": {"dead-letter-exchange": "x"}}),
    ("op_overflow_not_allowed", "operator-policies", {"pattern": "^q", "definition": {"overflow": "reject-publish"}}),
    ("op_allowed_keys", "operator-policies", {"pattern": "^zz-never", "definition": {"expires": 1000, "message-ttl": 5, "max-length-bytes": 5, "delivery-limit": 3, "max-in-memory-length": 3, "max-in-memory-bytes": 3}}),
]:
    name = "rec-" + label.replace("_", "-")
    policies[label] = api("PUT", f"/{kind}/%2F/{name}", body)
    api("DELETE", f"/{kind}/%2F/{name}")
policies["put_vhost_missing"] = api("PUT", "/policies/nosuch/p", {"pattern": "^q", "definition": {"message-ttl": 1}})
policies["get_missing"] = api("GET", "/policies/%2F/nope")
policies["delete_missing"] = api("DELETE", "/policies/%2F/nope")

# A queue under a policy and an operator policy, and with its own arguments.
policies["create_policy"] = api("PUT", "/policies/%2F/pol", {"pattern": "^polq$", "apply-to": "queues", "priority": 3,
                                                              "definition": {"message-ttl": 60000, "max-length": 100, "dead-letter-exchange": "pol-dlx"}})
policies["update_policy"] = api("PUT", "/policies/%2F/pol", {"pattern": "^polq$", "apply-to": "queues", "priority": 3,
                                                              "definition": {"message-ttl": 60000, "max-length": 100, "dead-letter-exchange": "pol-dlx"}})
policies["create_operator_policy"] = api("PUT", "/operator-policies/%2F/op", {"pattern": "^polq", "definition": {"max-length": 10, "message-ttl": 90000}})
_c = conn()
_c.channel().queue_declare("polq", arguments={"x-message-ttl": 120000, "x-dead-letter-exchange": "arg-dlx"})
_c.close()
# The management plugin shows a queue's policy after its next stats emission (every 5 s).
for _ in range(60):
    q = api("GET", "/queues/%2F/polq")["body"]
    if q.get("policy") and q.get("operator_policy"):
        break
    time.sleep(0.5)
policies["queue_view"] = {k: q.get(k) for k in ["name", "arguments", "policy", "operator_policy", "effective_policy_definition", "type"]}
policies["list_policies"] = api("GET", "/policies")
policies["list_vhost_operator_policies"] = api("GET", "/operator-policies/%2F")
policies["get_policy"] = api("GET", "/policies/%2F/pol")
defs = api("GET", "/definitions")["body"]
policies["definitions_policies"] = defs.get("policies")
policies["delete_policy"] = api("DELETE", "/policies/%2F/pol")
api("DELETE", "/operator-policies/%2F/op")
for _ in range(60):
    q = api("GET", "/queues/%2F/polq")["body"]
    if not q.get("policy") and not q.get("operator_policy"):
        break
    time.sleep(0.5)
policies["queue_view_after_delete"] = {k: q.get(k) for k in ["policy", "operator_policy", "effective_policy_definition"]}
cleanup("polq")
out["policies"] = policies

# Acks for deliveries of a durable queue another client deleted meanwhile.
_c = conn()
_ch = _c.channel()
_ch.queue_declare("acked-after-delete", durable=True)
for _ in range(3):
    _ch.basic_publish("", "acked-after-delete", b"persistent", pika.BasicProperties(delivery_mode=2))
_tags = [_ch.basic_get("acked-after-delete")[0].delivery_tag for _ in range(3)]
_c2 = conn()
_c2.channel().queue_delete("acked-after-delete")
_c2.close()
try:
    _ch.basic_ack(_tags[0])
    _ch.basic_ack(_tags[2], multiple=True)
    _ok = _ch.queue_declare("acked-after-delete")
    out["acks_after_the_queue_is_deleted"] = {
        "acks": "accepted", "channel_open": _ch.is_open, "connection_open": _c.is_open,
        "redeclared_message_count": _ok.method.message_count}
except Exception as e:
    out["acks_after_the_queue_is_deleted"] = err(e)
cleanup("acked-after-delete")
_c.close()

json.dump(out, sys.stdout, indent=2, sort_keys=True)
print()
